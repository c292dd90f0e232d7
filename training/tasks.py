"""Celery tasks of the training app: ids in, services do the work."""

import logging

from celery import shared_task

from . import services
from .probes import runner as probe_runner
from .models import TrainingRun

logger = logging.getLogger(__name__)


# Training runs are jobs (morale/jobs.py): acked when they start (acks_late=False), so the
# broker never hands a six-hour run out again; a killed worker's run is found by its silence
# (no heartbeat for MORALE_JOB_STALE_MINUTES) and failed by ``sweep_runs``.
@shared_task(name="training.retrain", acks_late=False, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300)
def retrain(config: dict | None = None) -> int | None:
    """Periodic (celery beat): export the current judgments and train a head on them.

    Runs on queue ``gpu``. If a run is already going, this one is skipped: runs never
    overlap. Returns the run id.
    """
    try:
        run = services.training_run_queue(config=config or {}, triggered_by=TrainingRun.Trigger.SCHEDULE)
    except services.TrainingRunInProgress as exc:
        logger.info("retrain skipped: %s", exc)
        return None
    return services.training_run_execute(run_id=run.pk).pk


@shared_task(name="training.execute_run", acks_late=False, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300)
def execute_run(run_id: int) -> int:
    """Run a training queued from the admin. A second delivery finds it started and returns."""
    return services.training_run_execute(run_id=run_id).pk


@shared_task(name="training.sweep_runs", acks_late=True, soft_time_limit=60, time_limit=120)
def sweep_runs() -> dict:
    """Periodic, on queue ``default`` (a busy GPU worker must not delay it): fail training and
    probe runs whose worker went silent, re-send queued ones whose message was lost. Idempotent."""
    return {"training": services.training_runs_sweep(), "probes": probe_runner.probe_runs_sweep()}


@shared_task(name="training.probe_version", acks_late=False, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300)
def probe_version(run_id: int) -> int:
    """Run a queued probe run (queue ``gpu``: ``training.*`` is routed there). A second
    delivery finds it started or finished and returns; the scorer is the worker's own.
    Acknowledged at the start, like every lifecycle job: its six-hour limit is above the
    Redis visibility timeout, and a lost worker is found by ``sweep_runs``."""
    return probe_runner.probe_run_execute(run_id=run_id).pk


@shared_task(name="training.retrain_on_judgments", acks_late=True, soft_time_limit=120, time_limit=180)
def retrain_on_judgments() -> int | None:
    """Periodic (every MORALE_RETRAIN_CHECK_SECONDS, queue default): queue a head-only run
    once enough new judgments arrived (``training.trigger``) and send it to a gpu worker.
    Returns the queued run's id, None when none was due. Repeating it is harmless: a second
    run is never queued while one is going."""
    from . import trigger

    run = trigger.retrain_if_due()
    if run is None:
        return None
    services.training_run_send(run_id=run.pk, task=execute_run)
    return run.pk
