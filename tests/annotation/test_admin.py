"""The researcher's admin: uploads are checked, new content goes through the services, judgments are read-only."""

import hashlib
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation import services
from annotation.models import Context, Scenario
from tests.conftest import png_bytes
from tests.factories import make_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("staff", "staff@example.org", "pw-for-tests")
    client.force_login(user)
    return client


def add_context(client, upload, scenarios=()):
    data = {
        "image": upload,
        "setting": "a kitchen",
        "source": "test",
        "image_origin": "real",
        "is_active": "on",
        "scenarios-TOTAL_FORMS": str(len(scenarios)),
        "scenarios-INITIAL_FORMS": "0",
    }
    for i, text in enumerate(scenarios):
        data[f"scenarios-{i}-text"] = text
    return client.post(reverse("admin:annotation_context_add"), data)


def test_admin_upload_of_a_real_image_stores_its_hash(staff_client):
    response = add_context(staff_client, SimpleUploadedFile("kitchen.png", png_bytes(), content_type="image/png"))
    assert response.status_code == 302
    assert len(Context.objects.get().image_sha256) == 64


def test_admin_add_form_creates_the_context_through_the_service(staff_client):
    with mock.patch("annotation.services.context_create", wraps=services.context_create) as create:
        response = add_context(staff_client, SimpleUploadedFile("kitchen.png", png_bytes(), content_type="image/png"))
    context = Context.objects.get()
    create.assert_called_once()
    assert response.status_code == 302 and response.url == reverse("admin:annotation_context_changelist")
    assert context.setting == "a kitchen" and context.is_active


def test_scenarios_added_on_the_context_page_are_cleaned_and_scored_at_once(
    staff_client, django_capture_on_commit_callbacks
):
    upload = SimpleUploadedFile("kitchen.png", png_bytes(), content_type="image/png")
    with mock.patch("modelloop.tasks.score_scenarios.apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            response = add_context(staff_client, upload, scenarios=["  turning the   pot handle inward "])
    assert response.status_code == 302
    scenario = Scenario.objects.get()
    assert scenario.context == Context.objects.get() and scenario.text == "turning the pot handle inward"
    assert [scenario.pk] in [call.kwargs["kwargs"]["scenario_ids"] for call in send.call_args_list]


def test_replacing_a_context_image_in_the_admin_records_its_new_hash(staff_client):
    context = make_context("a kitchen")
    new_png = png_bytes(color=(1, 2, 3))
    response = staff_client.post(
        reverse("admin:annotation_context_change", args=[context.pk]),
        {
            "image": SimpleUploadedFile("new.png", new_png, content_type="image/png"),
            "setting": "a kitchen",
            "source": "",
            "image_origin": "real",
            "is_active": "on",
            "scenarios-TOTAL_FORMS": "0",
            "scenarios-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    stored = Context.objects.get(pk=context.pk)
    assert stored.image_sha256 != context.image_sha256 and stored.image_sha256 == hashlib.sha256(new_png).hexdigest()


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
