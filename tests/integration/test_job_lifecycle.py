"""The job lifecycle (morale/jobs.py) with real processes and real concurrent connections:
a worker SIGKILLed in the middle of an import, and (PostgreSQL) a claim blocked behind
another worker's uncommitted claim. SQLite in the first pass of scripts/test.sh, PostgreSQL
in the second.
"""

import io
import os
import signal
import threading
import time
import zipfile
from datetime import timedelta
from unittest import mock

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections, transaction
from django.utils import timezone

from annotation import tasks as annotation_tasks
from annotation.dataset.export import service as export_service
from annotation.dataset.importing import service as import_service
from annotation.models import Context, DatasetExport, ImportBatch, Scenario
from morale import jobs
from tests.conftest import png_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def queued_import(rows: int) -> ImportBatch:
    images = io.BytesIO()
    with zipfile.ZipFile(images, "w") as z:
        for n in range(rows):
            z.writestr(f"i{n}.png", png_bytes(color=(n, 7, 2 * n)))
    data = "external_id,image_path,setting,scenario_text\n" + "".join(
        f"k{n},i{n}.png,a hall {n},opening door {n}\n" for n in range(rows)
    )
    return import_service.import_queue(
        data_upload=SimpleUploadedFile("killed.csv", data.encode()),
        images_upload=SimpleUploadedFile("images.zip", images.getvalue()),
    )


def test_a_worker_sigkilled_mid_import_leaves_a_batch_the_sweep_queues_again(settings):
    settings.MORALE_IMPORT_CHUNK_ROWS = 2
    batch = queued_import(rows=6)
    stored = dict(batch.options["stored"])
    pid = os.fork()
    if pid == 0:  # the worker: writes the first chunk, then is killed inside the second
        try:
            inherited = [conn.connection for conn in connections.all()]  # never closed here: the parent's
            for conn in connections.all():
                conn.connection = None  # open our own
            real, calls = import_service.write_rows, []

            def killed_in_second_chunk(*args):
                calls.append(1)
                if len(calls) == 2:
                    os.kill(os.getpid(), signal.SIGKILL)  # no finally, no rollback sent: the process is gone
                return real(*args)

            import_service.write_rows = killed_in_second_chunk
            import_service.import_run(batch.pk)
        finally:
            os._exit(3)  # not reached when killed
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    batch.refresh_from_db()
    assert batch.status == "running" and batch.attempts == 1
    assert Context.objects.filter(import_batch=batch).count() == 2  # the first chunk committed, the second rolled back
    assert all(default_storage.exists(name) for name in stored.values())  # kept for the next attempt

    assert jobs.sweep(import_service.IMPORT_JOB)["requeued"] == 0  # silent for less than the staleness: alive
    ImportBatch.objects.filter(pk=batch.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=settings.MORALE_JOB_STALE_MINUTES + 1)
    )
    with mock.patch.object(annotation_tasks.import_batch, "delay") as delay:
        assert annotation_tasks.resume_jobs() == 1
    delay.assert_called_once_with(batch.pk)
    done = import_service.import_run(batch.pk)  # what the re-sent message does
    assert done.status == "done", done.errors
    assert done.attempts == 2 and done.counts["resumed"] is True
    assert done.counts["contexts_created"] == 6 and done.counts["contexts_present"] == 0
    assert Context.objects.filter(external_id__startswith="k").count() == 6
    assert Scenario.objects.filter(context__external_id__startswith="k").count() == 6
    assert not any(default_storage.exists(name) for name in stored.values())  # cleaned up at last


@pytest.mark.postgres
def test_on_postgres_a_claim_waits_for_an_uncommitted_claim_and_then_loses():
    """READ COMMITTED: the second UPDATE blocks on the row lock, re-reads the row once the first
    commits, finds it no longer queued and changes nothing."""
    export = export_service.dataset_export_queue(fmt="jsonl")
    claimed, release = threading.Event(), threading.Event()
    results, errors = {}, []

    def first():
        try:
            with transaction.atomic():
                results["first"] = jobs.claim(export_service.EXPORT_JOB, export.pk)
                claimed.set()
                release.wait(timeout=30)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    def second():
        try:
            claimed.wait(timeout=30)
            results["second"] = jobs.claim(export_service.EXPORT_JOB, export.pk)
            results["second_done_at"] = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    claimed.wait(timeout=30)
    time.sleep(1.0)
    assert "second" not in results  # blocked behind the first claim's row lock
    released_at = time.monotonic()
    release.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert results["first"] is not None and results["second"] is None
    assert results["second_done_at"] >= released_at
    assert DatasetExport.objects.get(pk=export.pk).attempts == 1
