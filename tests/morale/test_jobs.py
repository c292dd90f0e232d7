"""The one job lifecycle (morale/jobs.py) as exports, imports and training runs use it:
claim once, fenced and throttled heartbeats, the stale sweep and its re-send policy; the
broker's visibility timeout against the tasks' time limits; chunked import writes.

Runs on SQLite and, in the PostgreSQL pass of scripts/test.sh, on PostgreSQL.
"""

import threading
from datetime import timedelta
from unittest import mock

import pytest
from celery import current_app
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, connections
from django.utils import timezone

from annotation import tasks as annotation_tasks
from annotation.dataset.export import service as export_service
from annotation.dataset.importing import service as import_service
from annotation.models import Context, DatasetExport, ImportBatch, ImportedRating, Scenario
from modelloop.scoring.offline import EfficientNetMiniLMBackbone
from morale import jobs
from morale.settings import base as base_settings
from tests.annotation.dataset.helpers import rated_context
from tests.conftest import png_bytes
from tests.factories import make_context
from training import services as training_services
from training import tasks as training_tasks
from training.models import TrainingRun

pytestmark = pytest.mark.django_db

EXPORT, IMPORT, TRAINING = export_service.EXPORT_JOB, import_service.IMPORT_JOB, training_services.TRAINING_JOB


def _age(kind, pk, minutes):
    kind.objects.filter(pk=pk).update(heartbeat_at=timezone.now() - timedelta(minutes=minutes))


def _stale(minutes_more=1):
    return django_settings.MORALE_JOB_STALE_MINUTES + minutes_more


# --- claim -------------------------------------------------------------------------------------
def test_two_claims_of_one_job_one_wins_and_the_loser_does_nothing():
    export = export_service.dataset_export_queue(fmt="jsonl")
    first = jobs.claim(EXPORT, export.pk)
    second = jobs.claim(EXPORT, export.pk)
    assert first is not None and first.status == "running" and first.attempts == 1 and first.claim_token
    assert second is None
    assert export_service.dataset_export_run(export.pk) is None  # a duplicate message writes nothing


@pytest.mark.django_db(transaction=True)
def test_a_claim_race_between_threads_has_exactly_one_winner():
    export = export_service.dataset_export_queue(fmt="jsonl")
    barrier, won, errors = threading.Barrier(8), [], []

    def worker():
        try:
            barrier.wait(timeout=30)
            if jobs.claim(EXPORT, export.pk) is not None:
                won.append(1)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(won) == 1
    assert DatasetExport.objects.get(pk=export.pk).attempts == 1


# --- heartbeats --------------------------------------------------------------------------------
def test_heartbeats_are_throttled_and_fenced(settings):
    settings.MORALE_JOB_HEARTBEAT_SECONDS = 3600
    export = jobs.claim(EXPORT, export_service.dataset_export_queue(fmt="jsonl").pk)
    assert jobs.beat(EXPORT, export) is False  # just claimed: not due
    assert jobs.beat(EXPORT, export, force=True) is True
    _age(EXPORT, export.pk, _stale())
    assert jobs.sweep(EXPORT)["requeued"] == 1  # declared lost
    with pytest.raises(jobs.JobLost, match="no longer held"):
        jobs.beat(EXPORT, export, force=True)  # the old worker learns it and stops
    again = jobs.claim(EXPORT, export.pk)
    assert again.attempts == 2
    with pytest.raises(jobs.JobLost):
        jobs.finish(EXPORT, export)  # the lost attempt cannot overwrite the new one
    assert DatasetExport.objects.get(pk=export.pk).claim_token == again.claim_token


def test_a_heartbeat_keeps_a_long_running_export_alive(settings):
    export = jobs.claim(EXPORT, export_service.dataset_export_queue(fmt="jsonl").pk)
    _age(EXPORT, export.pk, _stale())  # it has been working for longer than the staleness ...
    jobs.beat(EXPORT, export, force=True)  # ... and still beats
    assert jobs.sweep(EXPORT) == {"requeued": 0, "failed": 0, "sent": 0, "unsent": 0}
    assert DatasetExport.objects.get(pk=export.pk).status == "running"


def test_feature_extraction_beats_so_a_long_healthy_training_run_is_never_swept(settings, monkeypatch):
    """Every batch of features "takes" longer than the staleness (the heartbeat is aged by
    that much inside it); the sweep between batches must still find the run alive."""
    settings.MORALE_JOB_HEARTBEAT_SECONDS = 0
    settings.MORALE_SCORER_BATCH_SIZE = 4
    settings.MORALE_EXPORT_TEST_FRACTION = 0.3
    for n in range(6):
        rated_context([[(5, "text"), (4, "text"), (5, "text")], [(1, "text"), (2, "text"), (1, "text")]],
                      setting=f"a room {n}")
    inner = EfficientNetMiniLMBackbone()
    swept = []

    class SlowBackbone:
        backbone_ref, feature_dim = inner.backbone_ref, inner.feature_dim

        def features(self, items):
            running = TrainingRun.objects.get(status="running")
            swept.append(training_services.training_runs_sweep())  # beat's periodic task, between batches
            assert TrainingRun.objects.get(pk=running.pk).status == "running"
            result = inner.features(items)
            _age(TRAINING, running.pk, _stale())  # this batch took longer than the staleness
            return result

    # Enough training for a head whose scores follow the 1-5 scale (one epoch at the default
    # learning rate may leave it flat, and a flat calibration rightly fails the run).
    run = training_services.training_run_queue(config={"epochs": 10, "lr": 3e-3})
    run = training_services.training_run_execute(run_id=run.pk, backbone=SlowBackbone())
    assert len(swept) >= 3
    assert run.status == "succeeded", run.error
    assert all(counts["failed"] == 0 for counts in swept)


# --- the sweep ---------------------------------------------------------------------------------
def test_a_stale_training_run_is_failed_with_the_reason_and_a_new_run_can_be_queued():
    lost = jobs.claim(TRAINING, training_services.training_run_queue().pk)  # claimed, then SIGKILLed
    _age(TRAINING, lost.pk, _stale())
    fresh = training_services.training_run_queue()  # the sweep runs on queueing
    lost.refresh_from_db()
    assert lost.status == "failed" and lost.finished_at is not None
    assert "no heartbeat since" in lost.error and "the worker was lost" in lost.error
    assert fresh.status == "queued"


def test_a_run_silent_for_less_than_the_staleness_still_blocks_a_second_run():
    alive = jobs.claim(TRAINING, training_services.training_run_queue().pk)
    _age(TRAINING, alive.pk, _stale(-2))
    with pytest.raises(training_services.TrainingRunInProgress):
        training_services.training_run_queue()


def test_the_periodic_sweeps_are_scheduled_and_the_training_sweep_is_not_behind_the_gpu():
    from django_celery_beat.models import PeriodicTask

    assert {"annotation.resume_jobs", "training.sweep_runs"} <= set(PeriodicTask.objects.values_list("task", flat=True))
    assert current_app.amqp.router.route({}, "training.sweep_runs")["queue"].name == "default"
    assert current_app.amqp.router.route({}, "training.execute_run")["queue"].name == "gpu"


def test_resending_is_idempotent_and_a_lost_job_is_failed_after_the_last_attempt(settings):
    settings.MORALE_JOB_MAX_ATTEMPTS = 2
    export = export_service.dataset_export_queue(fmt="jsonl")
    with mock.patch.object(annotation_tasks.export_dataset, "delay") as delay:
        jobs.claim(EXPORT, export.pk)
        _age(EXPORT, export.pk, _stale())
        assert jobs.sweep(EXPORT) == {"requeued": 1, "failed": 0, "sent": 1, "unsent": 0}
        assert jobs.sweep(EXPORT) == {"requeued": 0, "failed": 0, "sent": 0, "unsent": 0}  # nothing twice
        assert delay.call_count == 1
        # Both messages (the original and the re-send) arrive: one claim, one writer.
        assert [jobs.claim(EXPORT, export.pk) is not None for _ in range(2)] == [True, False]
        _age(EXPORT, export.pk, _stale())
        assert jobs.sweep(EXPORT)["failed"] == 1  # lost twice: failed, not sent a third time
        assert delay.call_count == 1
    export.refresh_from_db()
    assert export.status == "failed" and "after 2 attempts" in export.error


def test_a_queued_job_whose_send_failed_is_sent_by_the_sweep(settings):
    settings.MORALE_JOB_RESEND_SECONDS = 0
    batch = ImportBatch.objects.create(file_name="x.csv", file_sha256="", format="", status="queued")
    with mock.patch.object(annotation_tasks.import_batch, "delay", side_effect=ConnectionError("broker down")):
        assert jobs.send(IMPORT, batch.pk) is False
        assert jobs.sweep(IMPORT)["unsent"] == 1
    with mock.patch.object(annotation_tasks.import_batch, "delay") as delay:
        assert jobs.sweep(IMPORT)["sent"] == 1
        assert jobs.sweep(IMPORT)["sent"] == 0  # sent now: not again until it is stale
    delay.assert_called_once_with(batch.pk)
    assert ImportBatch.objects.get(pk=batch.pk).sent_at is not None


def _queued_import(rows=4, allow_partial=False):
    import io
    import zipfile

    images = io.BytesIO()
    with zipfile.ZipFile(images, "w") as z:
        for n in range(rows):
            z.writestr(f"i{n}.png", png_bytes(color=(n, 2 * n, 3)))
    data = "external_id,image_path,setting,scenario_text\n" + "".join(
        f"e{n},i{n}.png,a place {n},doing thing {n}\n" for n in range(rows)
    )
    return import_service.import_queue(
        data_upload=SimpleUploadedFile("many.csv", data.encode()),
        images_upload=SimpleUploadedFile("images.zip", images.getvalue()),
        allow_partial=allow_partial,
    )


def test_a_killed_import_is_queued_again_and_finished_from_its_kept_files(settings):
    batch = _queued_import()
    jobs.claim(IMPORT, batch.pk)  # a worker took it and was SIGKILLed: no finally ran
    _age(IMPORT, batch.pk, _stale())
    with mock.patch.object(annotation_tasks.import_batch, "delay") as delay:
        assert annotation_tasks.resume_jobs() == 1
    delay.assert_called_once_with(batch.pk)
    done = import_service.import_run(batch.pk)
    assert done.status == "done", done.errors
    assert done.attempts == 2 and done.counts["contexts_created"] == 4
    assert Context.objects.filter(import_batch=batch).count() == 4


def test_an_inline_import_killed_mid_request_is_failed_with_the_reason():
    batch = ImportBatch.objects.create(file_name="x.csv", file_sha256="", format="csv", **jobs.claimed_fields())
    _age(IMPORT, batch.pk, _stale())
    assert import_service.imports_resume() == 0  # nothing to re-send: no files were kept
    batch.refresh_from_db()
    assert batch.status == "failed" and "the worker was lost" in batch.errors[0]["message"]


# --- the broker: Redis' visibility timeout against the task time limits --------------------------
LIFECYCLE_TASKS = {
    "annotation.export_dataset", "annotation.import_batch", "training.retrain", "training.execute_run",
    "training.probe_version",
}


def test_the_visibility_timeout_is_above_every_acks_late_task_time_limit():
    options = base_settings.broker_transport_options("redis://127.0.0.1:6379/0", django_settings.MORALE_TEST_VAR)
    visibility = options["visibility_timeout"]
    assert visibility == django_settings.MORALE_BROKER_VISIBILITY_TIMEOUT_SECONDS <= 15 * 60  # back within minutes
    current_app.loader.import_default_modules()
    ours = {name: task for name, task in current_app.tasks.items() if not name.startswith("celery.")}
    assert LIFECYCLE_TASKS | {"training.sweep_runs", "annotation.resume_jobs"} <= ours.keys()
    for name, task in ours.items():
        acks_late = task.acks_late if task.acks_late is not None else current_app.conf.task_acks_late
        if acks_late:
            assert task.time_limit, f"{name} acks late but has no time_limit: a killed worker's copy would never return"
            assert task.time_limit < visibility, f"{name}: time_limit {task.time_limit} >= visibility {visibility}"
        else:
            assert name in LIFECYCLE_TASKS, f"{name} acks early: only jobs the lifecycle sweep recovers may"
    assert current_app.conf.task_reject_on_worker_lost and current_app.conf.task_acks_late


def test_the_filesystem_broker_keeps_its_folders_and_redis_gets_the_timeout(tmp_path):
    assert "data_folder_in" in base_settings.broker_transport_options("filesystem://localhost/", tmp_path)
    assert "visibility_timeout" not in base_settings.broker_transport_options("filesystem://localhost/", tmp_path)


# --- large imports: rows decide too, and chunks commit one by one ------------------------------
def test_an_upload_of_many_small_rows_is_queued(settings):
    settings.MORALE_IMPORT_INLINE_MAX_ROWS = 3
    few = SimpleUploadedFile("a.csv", b"h\n1\n2\n")
    many = SimpleUploadedFile("b.csv", b"h\n1\n2\n3\n")
    images = SimpleUploadedFile("i.zip", b"")
    assert not import_service.import_should_queue(few, images)
    assert import_service.import_should_queue(many, images)
    assert many.read(2) == b"h\n"  # read from the start again by the import


def test_a_bad_chunk_size_is_refused(settings):
    settings.MORALE_IMPORT_CHUNK_ROWS = 0
    batch = _queued_import(rows=1)
    done = import_service.import_run(batch.pk)
    assert done.status == "failed" and "MORALE_IMPORT_CHUNK_ROWS must be at least 1" in done.errors[0]["message"]


@pytest.mark.django_db(transaction=True)
def test_an_import_of_many_rows_commits_in_chunks_and_an_annotator_writes_between_them(settings):
    settings.MORALE_IMPORT_CHUNK_ROWS = 2
    context = make_context("the annotator's page")
    batch = _queued_import(rows=7)
    commits, between = [], []
    real_commit, real_store = connection.commit, import_service.store_images

    def counting_commit():
        commits.append(1)
        return real_commit()

    def annotator_writes_meanwhile(*args, **kwargs):
        def write():
            try:
                between.append(Scenario.objects.create(context=context, text=f"written between chunks {len(between)}"))
            finally:
                connections.close_all()

        thread = threading.Thread(target=write)
        thread.start()
        thread.join(timeout=10)  # an import holding the write lock would make this wait (or fail)
        assert not thread.is_alive()
        return real_store(*args, **kwargs)

    with mock.patch.object(connection, "commit", counting_commit), \
            mock.patch.object(import_service, "store_images", annotator_writes_meanwhile):
        done = import_service.import_run(batch.pk)
    assert done.status == "done", done.errors
    assert done.counts["contexts_created"] == 7 and done.counts["scenarios_created"] == 7
    assert len(commits) >= 4  # 7 rows in chunks of 2: four chunk transactions
    assert len(between) == 4 and all(s.pk for s in between)
    # Importing the same file again changes nothing.
    again = _queued_import(rows=7)
    assert import_service.import_run(again.pk).counts["contexts_created"] == 0
    assert Context.objects.filter(external_id__startswith="e").count() == 7


def test_a_failure_after_some_chunks_leaves_a_failed_batch_with_the_reason_not_half_counted(settings):
    settings.MORALE_IMPORT_CHUNK_ROWS = 2
    batch = _queued_import(rows=6)
    real = import_service.write_rows
    calls = []

    def fail_third(batch_, groups, images):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(batch_, groups, images)

    with mock.patch.object(import_service, "write_rows", fail_third):
        failed = import_service.import_run(batch.pk)
    assert failed.status == "failed"
    message = failed.errors[0]["message"]
    assert "disk full" in message and "2 of 3 chunks (4 rows) were written" in message
    assert "contexts_created" not in failed.counts and failed.counts["rows_written"] == 4
    assert Context.objects.count() == 4
    # Importing the same file again finishes it; the written rows are matched, not doubled.
    rest = import_service.import_run(_queued_import(rows=6).pk)
    assert rest.status == "done" and rest.counts["contexts_created"] == 2 and rest.counts["contexts_present"] == 4
    assert Context.objects.count() == 6 and not ImportedRating.objects.exists()


def test_the_admin_queues_an_upload_of_few_bytes_but_many_rows(settings, client, django_user_model, tmp_path):
    from tests.annotation.test_import_admin import GOOD_CSV, IMAGES, csv_upload, post_import, zip_upload
    from morale.roles import researcher_make

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MORALE_IMPORT_INLINE_MAX_ROWS = 3  # GOOD_CSV: a header and three rows
    user = django_user_model.objects.create_user("rowan", password="pw-for-tests-123")
    researcher_make(user)
    client.force_login(user)
    with mock.patch.object(annotation_tasks.import_batch, "delay"):
        response = post_import(client, csv_upload(GOOD_CSV), zip_upload(IMAGES))
    assert response.status_code == 302
    assert ImportBatch.objects.get().status == "queued" and not Context.objects.exists()
