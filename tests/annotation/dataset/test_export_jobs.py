"""Background dataset exports: queue, claim, progress, selection, failure, resume.

The admin and the API queue exports (``dataset_export_queue``) so that no request waits on
a large file; a worker runs ``dataset_export_run``. These tests call the task body
directly (the real worker is exercised in tests/integration).
"""

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from annotation import tasks
from annotation.dataset.export import service
from annotation.dataset.format import iter_export
from annotation.models import DatasetExport
from tests.annotation.dataset.helpers import rated_context

pytestmark = pytest.mark.django_db


def three_contexts():
    return [rated_context([[(4, "text"), (4, "image"), (5, "both")]], setting=f"place {i}")[0] for i in range(3)]


def test_queue_records_a_queued_export_and_sends_the_task_after_commit(django_capture_on_commit_callbacks):
    three_contexts()
    with mock.patch.object(tasks.export_dataset, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            export = service.dataset_export_queue(fmt="jsonl")
    assert export.status == DatasetExport.Status.QUEUED
    assert not export.file
    delay.assert_called_once_with(export.pk)


def test_run_writes_the_file_with_progress_and_is_idempotent():
    three_contexts()
    export = service.dataset_export_queue(fmt="jsonl", chunk_size=1)
    done = service.dataset_export_run(export.pk)
    assert done is not None and done.status == DatasetExport.Status.DONE
    export.refresh_from_db()
    assert export.status == DatasetExport.Status.DONE
    assert export.progress_total == 3 and export.progress_done == 3
    assert len(list(iter_export(export.file.path))) == 3
    # A redelivered message finds it done and writes nothing.
    assert service.dataset_export_run(export.pk) is None
    export.refresh_from_db()
    assert export.status == DatasetExport.Status.DONE


def test_progress_is_reported_per_chunk():
    three_contexts()
    export = service.dataset_export_queue(fmt="jsonl", chunk_size=1)
    reported = []
    original = service.export_write

    def spy(out, **kwargs):
        progress = kwargs.pop("progress")
        return original(out, progress=lambda n: (reported.append(n), progress(n)), **kwargs)

    with mock.patch.object(service, "export_write", spy):
        service.dataset_export_run(export.pk)
    assert reported[:3] == [1, 2, 3] and reported[-1] == 3


def test_a_selection_exports_only_the_selected_contexts():
    first, second, third = three_contexts()
    export = service.dataset_export_create(fmt="jsonl", context_ids=[third.pk, first.pk])
    ids = [line["context_id"] for line in iter_export(export.file.path)]
    assert ids == [first.pk, third.pk]
    assert export.options["context_ids"] == [first.pk, third.pk]
    assert export.progress_total == 2


@pytest.mark.parametrize("bad", [[], ["7"], [0], [True], "1,2"])
def test_a_bad_selection_is_refused_before_anything_is_recorded(bad):
    with pytest.raises(ValueError, match="context_ids"):
        service.dataset_export_queue(fmt="jsonl", context_ids=bad)
    assert not DatasetExport.objects.exists()


def test_a_failing_export_is_marked_failed_and_the_task_does_not_raise():
    three_contexts()
    export = service.dataset_export_queue(fmt="jsonl")
    with mock.patch.object(service, "iter_records", side_effect=OSError("disk full")):
        tasks.export_dataset(export.pk)
    export.refresh_from_db()
    assert export.status == DatasetExport.Status.FAILED
    assert "disk full" in export.error and not export.file


def test_a_running_export_with_a_live_worker_is_not_taken_twice():
    export = service.dataset_export_queue(fmt="jsonl")
    assert service.dataset_export_claim(export.pk) is not None
    assert service.dataset_export_claim(export.pk) is None  # heartbeat is fresh


def test_an_orphaned_export_is_taken_over_and_resumed(settings):
    three_contexts()
    export = service.dataset_export_queue(fmt="jsonl")
    service.dataset_export_claim(export.pk)  # a worker took it, then was killed
    stale = timezone.now() - timedelta(minutes=settings.MORALE_JOB_STALE_MINUTES + 1)
    DatasetExport.objects.filter(pk=export.pk).update(heartbeat_at=stale)
    with mock.patch.object(tasks.export_dataset, "delay") as delay:
        assert service.exports_resume() == 1
    delay.assert_called_once_with(export.pk)
    service.dataset_export_run(export.pk)
    export.refresh_from_db()
    assert export.status == DatasetExport.Status.DONE


def test_resume_resends_exports_left_queued_by_a_dead_broker():
    export = service.dataset_export_queue(fmt="jsonl")
    DatasetExport.objects.filter(pk=export.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    with mock.patch.object(tasks.export_dataset, "delay", side_effect=ConnectionError("broker down")):
        assert service.exports_resume() == 1  # the send failed: logged, the record stays queued
    export.refresh_from_db()
    assert export.status == DatasetExport.Status.QUEUED


def test_queue_with_the_broker_down_keeps_the_record(django_capture_on_commit_callbacks):
    with mock.patch.object(tasks.export_dataset, "delay", side_effect=ConnectionError("broker down")):
        with django_capture_on_commit_callbacks(execute=True):
            export = service.dataset_export_queue(fmt="csv")
    export.refresh_from_db()
    assert export.status == DatasetExport.Status.QUEUED
