"""The admin's import page and import batches, end to end with the test client."""

import io
import json
import zipfile

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import Context, ImportBatch, Scenario
from morale.roles import researcher_make
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db

IMPORT_URL = "admin:annotation_importbatch_import"
XSS = '<script>alert("x")</script>'


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def researcher_client(client, django_user_model):
    user = django_user_model.objects.create_user("rita", password="pw-for-tests-123")
    researcher_make(user)
    client.force_login(user)
    return client


def zip_upload(files: dict[str, bytes], name="images.zip") -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for entry, data in files.items():
            z.writestr(entry, data)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="application/zip")


def csv_upload(text: str, name="contexts.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode("utf-8"), content_type="text/csv")


GOOD_CSV = (
    "external_id,image_path,setting,scenario_text,text_only_label\n"
    "s1,street.png,a street,crossing on green,1\n"
    "s1,street.png,a street,crossing on red,-1\n"
    f"k1,kitchen.png,a kitchen,\"{XSS.replace(chr(34), chr(34) * 2)}\",\n"
)
IMAGES = {"street.png": png_bytes(color=(1, 2, 3)), "kitchen.png": png_bytes(color=(4, 5, 6))}


def post_import(client, data, images, **extra):
    return client.post(reverse(IMPORT_URL), {"data_file": data, "images": images, **extra})


def test_the_context_list_links_to_the_import_page(researcher_client):
    for listing in ("admin:annotation_context_changelist", "admin:annotation_importbatch_changelist"):
        page = researcher_client.get(reverse(listing)).content.decode()
        assert reverse(IMPORT_URL) in page, listing
    assert researcher_client.get(reverse(IMPORT_URL)).status_code == 200


def test_an_upload_imports_the_file_and_shows_the_counts(researcher_client):
    response = post_import(researcher_client, csv_upload(GOOD_CSV), zip_upload(IMAGES))
    assert response.status_code == 200
    batch = ImportBatch.objects.get()
    assert batch.status == "done" and batch.created_by.username == "rita"
    assert (batch.file_name, batch.options["images"]) == ("contexts.csv", "images.zip")
    assert Context.objects.count() == 2 and Scenario.objects.count() == 3
    page = response.content.decode()
    assert "contexts 2 new / 0 present; scenarios 3 new / 0 present" in page
    assert reverse("admin:annotation_importbatch_change", args=[batch.pk]) in page
    # the same upload again: nothing doubled
    again = post_import(researcher_client, csv_upload(GOOD_CSV), zip_upload(IMAGES))
    assert "contexts 0 new / 2 present; scenarios 0 new / 3 present" in again.content.decode()
    assert Scenario.objects.count() == 3


def test_a_bad_upload_is_rejected_with_a_readable_error_table(researcher_client):
    bad = GOOD_CSV + 'k1,kitchen.png,a kitchen,washing up,<b>bad</b>\n'
    response = post_import(researcher_client, csv_upload(bad), zip_upload(IMAGES))
    page = response.content.decode()
    assert "Nothing was imported" in page
    assert "<td>5</td><td>text_only_label</td>" in page
    assert "&lt;b&gt;bad&lt;/b&gt;" in page and "<b>bad</b>" not in page
    assert Context.objects.count() == 0
    batch = ImportBatch.objects.get()
    detail = researcher_client.get(reverse("admin:annotation_importbatch_change", args=[batch.pk])).content.decode()
    assert "<td>5</td><td>text_only_label</td>" in detail and "<b>bad</b>" not in detail
    listing = researcher_client.get(reverse("admin:annotation_importbatch_changelist")).content.decode()
    assert "contexts.csv" in listing and "rejected" in listing


def test_allow_partial_from_the_page(researcher_client):
    bad = GOOD_CSV + "k1,kitchen.png,a kitchen,washing up,7\n"
    post_import(researcher_client, csv_upload(bad), zip_upload(IMAGES), allow_partial="on")
    assert ImportBatch.objects.get().status == "done"
    assert Scenario.objects.count() == 3


def test_a_zip_with_path_traversal_is_refused_from_the_page(researcher_client):
    evil = zip_upload({**IMAGES, "../../outside.png": png_bytes()})
    page = post_import(researcher_client, csv_upload(GOOD_CSV), evil).content.decode()
    assert "unsafe entry" in page and Context.objects.count() == 0


def test_an_svg_in_the_zip_is_refused(researcher_client):
    svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"
    page = post_import(researcher_client, csv_upload(GOOD_CSV), zip_upload({**IMAGES, "street.png": svg})).content.decode()
    assert "not an image" in page and Context.objects.count() == 0


def test_scenario_text_is_escaped_in_the_admin_lists(researcher_client):
    post_import(researcher_client, csv_upload(GOOD_CSV), zip_upload(IMAGES))
    assert Scenario.objects.filter(text=XSS).exists()
    for url in (reverse("admin:annotation_scenario_changelist"),
                reverse("admin:annotation_context_change", args=[Context.objects.get(external_id="k1").pk])):
        page = researcher_client.get(url).content.decode()
        assert XSS not in page, url
        assert "&lt;script&gt;" in page, url


def test_the_batch_links_to_the_contexts_it_created(researcher_client):
    post_import(researcher_client, csv_upload(GOOD_CSV), zip_upload(IMAGES))
    batch = ImportBatch.objects.get()
    detail = researcher_client.get(reverse("admin:annotation_importbatch_change", args=[batch.pk])).content.decode()
    url = reverse("admin:annotation_context_changelist") + f"?import_batch__id__exact={batch.pk}"
    assert url in detail
    listing = researcher_client.get(url)
    assert listing.status_code == 200 and "a kitchen" in listing.content.decode()


def test_import_batches_are_read_only(researcher_client):
    post_import(researcher_client, csv_upload(GOOD_CSV), zip_upload(IMAGES))
    batch = ImportBatch.objects.get()
    assert researcher_client.get(reverse("admin:annotation_importbatch_add")).status_code == 403
    assert researcher_client.get(reverse("admin:annotation_importbatch_delete", args=[batch.pk])).status_code == 403


def test_staff_without_the_add_context_permission_cannot_import(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw-for-tests-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_context"))
    client.force_login(user)
    assert client.get(reverse(IMPORT_URL)).status_code == 403
    assert post_import(client, csv_upload(GOOD_CSV), zip_upload(IMAGES)).status_code == 403
    assert reverse(IMPORT_URL) not in client.get(reverse("admin:annotation_context_changelist")).content.decode()
    assert ImportBatch.objects.count() == 0


def test_non_staff_users_are_sent_to_the_login_page(client, django_user_model):
    user = django_user_model.objects.create_user("annie", password="pw-for-tests-123")
    user.user_permissions.add(Permission.objects.get(codename="add_context"))  # even so: not staff
    client.force_login(user)
    response = post_import(client, csv_upload(GOOD_CSV), zip_upload(IMAGES))
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert ImportBatch.objects.count() == 0 and Context.objects.count() == 0


def test_staff_with_only_add_context_gets_the_result_on_the_page(client, django_user_model):
    user = django_user_model.objects.create_user("adder", password="pw-for-tests-123", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["add_context", "view_context"]))
    client.force_login(user)
    page = post_import(client, csv_upload(GOOD_CSV), zip_upload(IMAGES)).content.decode()
    assert "contexts 2 new / 0 present" in page
    assert reverse("admin:annotation_importbatch_change", args=[ImportBatch.objects.get().pk]) not in page


def test_the_form_requires_both_files(researcher_client):
    response = researcher_client.post(reverse(IMPORT_URL), {"data_file": csv_upload(GOOD_CSV)})
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    assert ImportBatch.objects.count() == 0


def test_a_jsonl_upload_with_a_hostile_file_name_is_shown_escaped(researcher_client):
    line = {"external_id": "b1", "image_path": "street.png", "setting": XSS, "scenarios": [{"text": XSS}]}
    upload = SimpleUploadedFile(f"{XSS}.jsonl", (json.dumps(line) + "\n").encode(), content_type="application/json")
    response = post_import(researcher_client, upload, zip_upload(IMAGES))
    batch = ImportBatch.objects.get()
    assert batch.status == "done" and batch.format == "jsonl"
    assert Scenario.objects.get().text == XSS
    for page in (response.content.decode(),
                 researcher_client.get(reverse("admin:annotation_importbatch_changelist")).content.decode(),
                 researcher_client.get(reverse("admin:annotation_importbatch_change", args=[batch.pk])).content.decode(),
                 researcher_client.get(reverse("admin:annotation_context_changelist")).content.decode()):
        assert XSS not in page
