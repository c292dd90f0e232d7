"""The researcher's admin: uploads are checked, judgments are read-only."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import Context
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("staff", "staff@example.org", "pw-for-tests")
    client.force_login(user)
    return client


def add_context(client, upload):
    return client.post(
        reverse("admin:annotation_context_add"),
        {
            "image": upload,
            "setting": "a kitchen",
            "source": "test",
            "image_origin": "real",
            "is_active": "on",
            "scenarios-TOTAL_FORMS": "0",
            "scenarios-INITIAL_FORMS": "0",
        },
    )


def test_admin_upload_of_a_real_image_stores_its_hash(staff_client):
    response = add_context(staff_client, SimpleUploadedFile("kitchen.png", png_bytes(), content_type="image/png"))
    assert response.status_code == 302
    assert len(Context.objects.get().image_sha256) == 64


@pytest.mark.parametrize(
    "payload", [b"%PDF-1.4 not an image", png_bytes()[:80]], ids=["pdf-named-png", "truncated-png"]
)
def test_admin_upload_of_a_bad_file_shows_a_clear_error(staff_client, payload):
    response = add_context(staff_client, SimpleUploadedFile("kitchen.png", payload, content_type="image/png"))
    assert response.status_code == 200  # the form again, with the error
    page = response.content.decode()
    assert "Upload a valid image" in page or "not an image" in page or "truncated" in page
    assert Context.objects.count() == 0


def test_judgments_are_read_only_in_the_admin(staff_client):
    assert staff_client.get(reverse("admin:annotation_judgment_add")).status_code == 403


def test_admin_pages_render(staff_client):
    for name in ("annotation_context", "annotation_scenario", "annotation_judgment", "annotation_annotator",
                 "annotation_assignment", "modelloop_modelversion", "modelloop_prediction"):
        assert staff_client.get(reverse(f"admin:{name}_changelist")).status_code == 200, name
