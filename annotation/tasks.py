"""Housekeeping tasks of the annotation app."""

from celery import shared_task

from . import services


@shared_task(name="annotation.expire_assignments", acks_late=True, soft_time_limit=60, time_limit=120)
def expire_assignments() -> int:
    """Periodic: mark pages past their time as expired (their slots lapsed already)."""
    return services.assignments_expire()
