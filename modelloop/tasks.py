"""Celery tasks of the model loop. They take ids, re-fetch and call one service
(``services.scoring.scenarios_score``, ``services.queue.unscored_sweep``).

All run on queue ``gpu`` (see CELERY_TASK_ROUTES). Each is idempotent, so ``acks_late``
is safe: a task redelivered after a killed worker stores nothing twice. With
``CELERY_WORKER_PREFETCH_MULTIPLIER = 1`` a busy GPU worker holds one task, not a backlog.
"""

import logging

from celery import shared_task
from django.db import OperationalError

from . import selectors, services
from .models import ModelVersion
from .scoring import ScoringError

logger = logging.getLogger(__name__)


@shared_task(
    name="modelloop.score_scenarios",
    acks_late=True,
    # Database restart or lock timeout: transient. Never ScoringError (a version that
    # cannot load): retrying would only repeat the failure; the sweeper re-queues later.
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
    soft_time_limit=300,
    time_limit=360,
)
def score_scenarios(*, scenario_ids: list[int], model_version_id: int | None = None) -> int:
    """Score these scenarios with the given version (default: the current one).

    When the version cannot be loaded (``services.scorer_for`` has logged the reason and
    stored it on the version), the batch is dropped: no prediction is written, so the
    scenarios stay missing and the sweeper queues them again once the model is fixed.
    """
    if model_version_id is None:
        version = selectors.model_version_current_or_none()
    else:
        version = ModelVersion.objects.filter(pk=model_version_id).first()
    if version is None:
        logger.warning("No model version %s; nothing scored.", model_version_id or "(current)")
        return 0
    try:
        return services.scenarios_score(scenario_ids=scenario_ids, model_version=version)
    except ScoringError as exc:
        logger.warning("%d scenario(s) left unscored: %s", len(scenario_ids), exc)
        return 0


@shared_task(name="modelloop.sweep_unscored", acks_late=True, soft_time_limit=120, time_limit=180)
def sweep_unscored() -> int:
    """Periodic: queue scoring for every active scenario the current version has not scored."""
    return services.unscored_sweep()
