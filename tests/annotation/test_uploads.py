"""Stored context images get their name from what Pillow detected, on every path that
stores one (the services, the admin's upload and replace forms, the importer), and
``/media/`` serves them with the detected type, ``nosniff`` and a sandboxing policy, and
never a file that holds no image. A browser check of the same: tests/browser/test_security.py."""

import io
import re
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from annotation import services
from annotation.dataset.importing import service as import_service
from annotation.images import image_file_name
from annotation.models import Context
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db


def image_bytes(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), (10, 200, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def stored_as(context: Context, extension: str) -> None:
    name = Path(context.image.name)
    assert name.parent.as_posix().startswith("contexts/")
    # The storage adds "_<7 characters>" before the extension when the name is taken.
    assert re.fullmatch(rf"{context.image_sha256}(_[A-Za-z0-9]{{7}})?\.{extension}", name.name), name


@pytest.mark.parametrize(
    "fmt, uploaded_as, extension",
    [("PNG", "poly.html", "png"), ("JPEG", "photo.png", "jpg"), ("GIF", "x.svg", "gif"), ("WEBP", "a", "webp"),
     ("BMP", "../../etc/passwd", "bmp")],
)
def test_a_new_context_is_stored_under_its_hash_and_detected_format(fmt, uploaded_as, extension):
    context = services.context_create(image_file=ContentFile(image_bytes(fmt), name=uploaded_as), setting="a street")
    stored_as(context, extension)
    assert context.image.read() == image_bytes(fmt)


def test_the_same_image_twice_keeps_its_extension(png_file):
    first = services.context_create(image_file=ContentFile(png_bytes(), name="a.html"), setting="one")
    second = services.context_create(image_file=ContentFile(png_bytes(), name="b.html"), setting="two")
    assert first.image.name != second.image.name and second.image.name.endswith(".png")


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("staff", "staff@example.org", "pw-for-tests"))
    return client


def admin_form(image, setting="a kitchen") -> dict:
    return {"image": image, "setting": setting, "source": "", "image_origin": "real", "is_active": "on",
            "scenarios-TOTAL_FORMS": "0", "scenarios-INITIAL_FORMS": "0"}


def test_the_admin_upload_and_replace_forms_store_the_detected_name(staff_client):
    upload = SimpleUploadedFile("kitchen.png", image_bytes("JPEG"), content_type="image/png")
    assert staff_client.post(reverse("admin:annotation_context_add"), admin_form(upload)).status_code == 302
    context = Context.objects.get()
    stored_as(context, "jpg")
    replacement = SimpleUploadedFile("new.png", image_bytes("GIF"), content_type="image/png")
    url = reverse("admin:annotation_context_change", args=[context.pk])
    assert staff_client.post(url, admin_form(replacement)).status_code == 302
    context.refresh_from_db()
    stored_as(context, "gif")


def test_an_imported_image_is_stored_under_its_detected_name_not_the_rows_path(tmp_path):
    images = tmp_path / "images.zip"
    with zipfile.ZipFile(images, "w") as zipped:
        zipped.writestr("poly.html", png_bytes())
        zipped.writestr("photo.gif", image_bytes("JPEG"))
    rows = tmp_path / "contexts.csv"
    rows.write_text("image_path,setting,scenario_text\npoly.html,a street,waving\nphoto.gif,a park,sitting\n")
    assert import_service.import_contexts(data_file=rows, images=images).status == "done"
    stored_as(Context.objects.get(setting="a street"), "png")
    stored_as(Context.objects.get(setting="a park"), "jpg")


def test_image_file_name_refuses_bytes_that_are_no_image():
    assert image_file_name(png_bytes()).endswith(".png")
    with pytest.raises(ValueError):
        image_file_name(b"<html><script>alert(1)</script></html>")


# --- /media/ -----------------------------------------------------------------------------
def put(relative: str, data: bytes) -> str:
    path = Path(settings.MEDIA_ROOT) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"/media/{relative}"


def test_media_answers_with_the_detected_type_nosniff_and_a_sandbox(client):
    context = services.context_create(image_file=ContentFile(image_bytes("JPEG"), name="x.jpg"), setting="a street")
    response = client.get(context.image.url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"] and "script-src" not in response["Content-Security-Policy"]


@pytest.mark.parametrize(
    "name, data, content_type",
    [("contexts/old/poly.html", png_bytes(), "image/png"), ("contexts/old/photo.svg", image_bytes("GIF"), "image/gif"),
     ("contexts/old/x.png.gz", png_bytes(), "image/png")],
)
def test_a_file_stored_under_a_misleading_name_is_served_as_what_it_is(client, name, data, content_type):
    response = client.get(put(name, data))
    assert response.status_code == 200 and response["Content-Type"] == content_type
    assert not response.has_header("Content-Encoding")


@pytest.mark.parametrize(
    "name, data",
    [("contexts/old/page.html", b"<html><script>alert(document.cookie)</script></html>"),
     ("contexts/old/vector.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
     ("contexts/old/empty.png", b""), ("contexts/old/text.png", b"just text")],
)
def test_a_stored_file_that_is_no_image_is_not_served(client, name, data):
    assert client.get(put(name, data)).status_code == 404


def test_a_missing_image_or_a_folder_is_a_404(client):
    assert client.get("/media/contexts/nothing/here.png").status_code == 404
    put("contexts/folder/x.png", png_bytes())
    assert client.get("/media/contexts/folder/").status_code == 404
