"""Housekeeping tasks of the annotation app."""

import logging

from celery import shared_task

from . import services

logger = logging.getLogger(__name__)


@shared_task(name="annotation.expire_assignments", acks_late=True, soft_time_limit=60, time_limit=120)
def expire_assignments() -> int:
    """Periodic: mark pages past their time as expired (their slots lapsed already)."""
    return services.assignments_expire()


# Exports and imports are jobs (morale/jobs.py): their message is acked when the task starts
# (acks_late=False), and a worker killed while writing is found by its silence (no heartbeat
# for MORALE_JOB_STALE_MINUTES) and the job queued again by ``resume_jobs``. Acking late would
# tie their recovery to the broker's visibility timeout, which must stay short (settings).
@shared_task(name="annotation.export_dataset", acks_late=False)
def export_dataset(export_id: int) -> None:
    """Write a queued dataset export (admin, API). Idempotent: a repeated or redelivered
    message finds the export claimed or finished and does nothing."""
    from annotation.dataset.export.service import dataset_export_run

    dataset_export_run(export_id)


@shared_task(name="annotation.import_batch", acks_late=False)
def import_batch(batch_id: int) -> None:
    """Import a batch uploaded in the admin. Idempotent: a repeated message finds it claimed."""
    from annotation.dataset.importing.service import import_run

    import_run(batch_id)


@shared_task(name="annotation.resume_jobs", acks_late=True, soft_time_limit=60, time_limit=120)
def resume_jobs() -> int:
    """Periodic: the job sweep of exports and imports (morale/jobs.py): re-send those left
    queued (broker was down, message lost), queue again or fail those whose worker died."""
    from annotation.dataset.export.service import exports_resume
    from annotation.dataset.importing.service import imports_resume

    return exports_resume() + imports_resume()


@shared_task(name="annotation.quality_refresh", acks_late=True, soft_time_limit=300, time_limit=360)
def quality_refresh() -> dict:
    """Periodic: recompute every annotator's quality flags; pause those failing canaries.
    Idempotent (it overwrites the flags with fresh ones)."""
    from annotation.research.quality import quality_refresh as refresh

    return refresh()
