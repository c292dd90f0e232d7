"""Background exports and imports through a real Celery worker consuming queue `default`
(the compose `worker-default` service's command; `scripts/run.sh` runs one worker on both
queues). SQLite + filesystem broker in the first pass of scripts/test.sh, PostgreSQL +
Redis in the second.
"""

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.dataset.export import service as export_service
from annotation.dataset import format as dataset_format
from annotation.dataset.importing import service as import_service
from annotation.models import Context, DatasetExport, ImportBatch
from tests.annotation.dataset.helpers import rated_context
from tests.conftest import png_bytes

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_worker_writes_a_queued_export_and_imports_a_queued_upload(start_worker):
    proc, log = start_worker("-Q", "default")
    context = rated_context([[(4, "text"), (5, "both"), (4, "image")]], setting="a quiet library")[0]

    export = export_service.dataset_export_queue(fmt="jsonl")
    wait_for(
        lambda: DatasetExport.objects.get(pk=export.pk).status != DatasetExport.Status.QUEUED
        and DatasetExport.objects.get(pk=export.pk).finished_at is not None,
        timeout=120, what="the worker to write the export", logs=[log],
    )
    export.refresh_from_db()
    assert export.status == DatasetExport.Status.DONE, export.error
    assert export.progress_done == export.progress_total == 1
    assert [line["context_id"] for line in dataset_format.iter_export(export.file.path)] == [context.pk]

    images = io.BytesIO()
    with zipfile.ZipFile(images, "w") as z:
        z.writestr("yard.png", png_bytes(color=(9, 8, 7)))
    data = "external_id,image_path,setting,scenario_text\ny1,yard.png,a back yard,watering the plants\n"
    batch = import_service.import_queue(
        data_upload=SimpleUploadedFile("yard.csv", data.encode()),
        images_upload=SimpleUploadedFile("images.zip", images.getvalue()),
    )
    wait_for(
        lambda: ImportBatch.objects.get(pk=batch.pk).finished_at is not None,
        timeout=120, what="the worker to run the import", logs=[log],
    )
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.DONE, json.dumps(batch.errors)
    assert Context.objects.filter(external_id="y1", import_batch=batch).exists()
    assert proc.poll() is None
