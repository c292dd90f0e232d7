"""Housekeeping tasks of the annotation app."""

import logging

from celery import shared_task

from . import services

logger = logging.getLogger(__name__)


def send_or_leave_queued(task, object_id: int) -> None:
    """Send ``task(object_id)`` for a queued export or import. With the broker down this
    logs and returns: the record stays queued and the periodic ``resume_jobs`` re-sends it."""
    try:
        task.delay(object_id)
    except Exception as exc:  # noqa: BLE001 - any broker failure
        logger.warning("could not send %s(%s) (%s); it will be re-sent", task.name, object_id, exc)


@shared_task(name="annotation.expire_assignments", acks_late=True, soft_time_limit=60, time_limit=120)
def expire_assignments() -> int:
    """Periodic: mark pages past their time as expired (their slots lapsed already)."""
    return services.assignments_expire()


@shared_task(name="annotation.export_dataset", acks_late=True)
def export_dataset(export_id: int) -> None:
    """Write a queued dataset export (admin, API). Idempotent: a repeated or redelivered
    message finds the export claimed or finished and does nothing."""
    from annotation.dataset.export.service import dataset_export_run

    dataset_export_run(export_id)


@shared_task(name="annotation.import_batch", acks_late=True)
def import_batch(batch_id: int) -> None:
    """Import a batch uploaded in the admin. Idempotent: a repeated message finds it claimed."""
    from annotation.dataset.importing.service import import_run

    import_run(batch_id)


@shared_task(name="annotation.resume_jobs", acks_late=True, soft_time_limit=60, time_limit=120)
def resume_jobs() -> int:
    """Periodic: re-send exports and imports left queued (broker was down), and exports
    orphaned by a dead worker."""
    from annotation.dataset.export.service import exports_resume
    from annotation.dataset.importing.service import imports_resume

    return exports_resume() + imports_resume()


@shared_task(name="annotation.quality_refresh", acks_late=True, soft_time_limit=300, time_limit=360)
def quality_refresh() -> dict:
    """Periodic: recompute every annotator's quality flags; pause those failing canaries.
    Idempotent (it overwrites the flags with fresh ones)."""
    from annotation.research.quality import quality_refresh as refresh

    return refresh()
