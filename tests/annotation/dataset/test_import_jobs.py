"""Large admin imports run in a worker: queued, claimed once, files cleaned up, re-sent after a dead broker.

The task body (``import_run``) is called directly here, as the worker would.
"""

from datetime import timedelta
from unittest import mock

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from annotation import tasks
from annotation.dataset.importing.service import import_run
from annotation.models import Context, ImportBatch, Scenario
from tests.annotation.test_import_admin import (  # noqa: F401 - media (autouse) and researcher_client are fixtures
    GOOD_CSV,
    IMAGES,
    XSS,
    csv_upload,
    media,
    post_import,
    researcher_client,
    zip_upload,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def queue_everything(settings):
    settings.MORALE_IMPORT_INLINE_MAX_BYTES = 0  # every upload is "large"


def test_a_large_upload_is_queued_and_the_worker_imports_it(researcher_client, queue_everything, django_capture_on_commit_callbacks):
    with mock.patch.object(tasks.import_batch, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            response = post_import(researcher_client, csv_upload(GOOD_CSV), zip_upload(IMAGES))
    batch = ImportBatch.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:annotation_importbatch_change", args=[batch.pk])
    assert batch.status == ImportBatch.Status.QUEUED and not Context.objects.exists()
    delay.assert_called_once_with(batch.pk)
    stored = batch.options["stored"]
    assert all(default_storage.exists(name) for name in stored.values())
    assert all(name.startswith("imports/") for name in stored.values())  # private: not under contexts/
    page = researcher_client.get(response["Location"]).content.decode()
    assert 'http-equiv="refresh"' in page  # reloads until done

    done = import_run(batch.pk)
    assert done.status == ImportBatch.Status.DONE
    assert Context.objects.count() == 2 and Scenario.objects.count() == 3
    assert Scenario.objects.filter(text=XSS).exists()
    assert not any(default_storage.exists(name) for name in stored.values())  # cleaned up
    page = researcher_client.get(response["Location"]).content.decode()
    assert 'http-equiv="refresh"' not in page
    # A redelivered message finds the batch claimed and does nothing.
    assert import_run(batch.pk) is None
    assert Context.objects.count() == 2


def test_small_uploads_still_import_within_the_request(researcher_client):
    response = post_import(researcher_client, csv_upload(GOOD_CSV), zip_upload(IMAGES))
    assert response.status_code == 200
    assert ImportBatch.objects.get().status == ImportBatch.Status.DONE


def test_a_queued_file_with_errors_is_rejected_by_the_worker_and_imports_nothing(researcher_client, queue_everything):
    bad = GOOD_CSV + "k2,missing.png,a yard,digging,\n"
    with mock.patch.object(tasks.import_batch, "delay"):
        post_import(researcher_client, csv_upload(bad), zip_upload(IMAGES))
    batch = import_run(ImportBatch.objects.get().pk)
    assert batch.status == ImportBatch.Status.REJECTED
    assert any(e["row"] == 5 for e in batch.errors)
    assert not Context.objects.exists()


def test_missing_uploaded_files_fail_the_batch_with_the_reason(researcher_client, queue_everything):
    with mock.patch.object(tasks.import_batch, "delay"):
        post_import(researcher_client, csv_upload(GOOD_CSV), zip_upload(IMAGES))
    batch = ImportBatch.objects.get()
    default_storage.delete(batch.options["stored"]["data"])
    batch = import_run(batch.pk)
    assert batch.status == ImportBatch.Status.FAILED
    assert "missing" in batch.errors[0]["message"]
    assert not Context.objects.exists()


def test_a_dead_broker_leaves_the_batch_queued_and_resume_sends_it_again(researcher_client, queue_everything, django_capture_on_commit_callbacks):
    with mock.patch.object(tasks.import_batch, "delay", side_effect=ConnectionError("broker down")):
        with django_capture_on_commit_callbacks(execute=True):
            response = post_import(researcher_client, csv_upload(GOOD_CSV), zip_upload(IMAGES))
    assert response.status_code == 302
    batch = ImportBatch.objects.get()
    assert batch.status == ImportBatch.Status.QUEUED
    ImportBatch.objects.filter(pk=batch.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    with mock.patch.object(tasks.import_batch, "delay") as delay, mock.patch.object(tasks.export_dataset, "delay"):
        assert tasks.resume_jobs() == 1
    delay.assert_called_once_with(batch.pk)
