"""The retrain trigger: queue a training run once enough new judgments have arrived.

``retrain_if_due`` is called every minute by the task ``training.retrain_on_judgments``
(``morale/periodic.py``). It counts the usable judgments that arrived since the export of
the last training run and, at the threshold (``retrain_threshold``: the admin's "Retrain
policy", else settings.MORALE_RETRAIN_AFTER_JUDGMENTS; 0 = off), reserves the single
training slot through ``services.training_run_queue``. It never queues while a run is
queued or running: it checks first, and the database constraint ``training_run_one_active``
refuses a second run if two checks race. The run is a head-only run (the default
``TrainConfig``), which reads the frozen backbone's features from the feature cache, so it
only computes features for the scenarios new since the last run; promotion goes through
the gate as for every run.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db.models import Q

from annotation.dataset.arrivals import judgments_arrived_since

from . import services
from .models import RetrainPolicy, TrainingRun


def retrain_threshold() -> int:
    """Judgments that trigger a run: the admin's value, else the setting; 0 means off."""
    value = RetrainPolicy.objects.filter(pk=RetrainPolicy.SINGLETON_PK).values_list("after_judgments", flat=True).first()
    if value is None:
        value = settings.MORALE_RETRAIN_AFTER_JUDGMENTS
    if value < 0:
        raise ValueError(f"MORALE_RETRAIN_AFTER_JUDGMENTS must be >= 0, not {value}")
    return value


def last_export_time() -> datetime | None:
    """When the data of the last training run was read: its export's creation time (the
    run's own creation time if it never got to an export); None before any run."""
    run = TrainingRun.objects.select_related("export").order_by("-id").first()
    if run is None:
        return None
    return run.export.created_at if run.export is not None else run.created_at


def usable_judgments_since(since: datetime | None) -> int:
    """New usable judgments since `since` (``annotation.dataset.arrivals``: first answers on
    non-canary scenarios by annotators who are not screened out, as the export counts them)."""
    return judgments_arrived_since(since)


def run_going() -> bool:
    """A run is queued or running (it holds the single training slot)."""
    return TrainingRun.objects.filter(Q(status=TrainingRun.Status.QUEUED) | Q(status=TrainingRun.Status.RUNNING)).exists()


def retrain_if_due(*, config: dict | None = None) -> TrainingRun | None:
    """Queue a run if the threshold is reached and no run is going; the queued run, else None.

    `config`: the run's TrainConfig fields (default: the defaults, a head-only run). The
    caller hands the run to a worker (``services.training_run_send``).
    """
    threshold = retrain_threshold()
    if threshold == 0:
        return None
    if run_going():
        return None
    if usable_judgments_since(last_export_time()) < threshold:
        return None
    try:
        return services.training_run_queue(config=config, triggered_by=TrainingRun.Trigger.JUDGMENTS)
    except services.TrainingRunInProgress:
        return None  # another check (or a researcher) took the slot between our check and now
