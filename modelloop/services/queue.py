"""Queueing scoring work after commit: new scenarios, an explicit rescore, the periodic sweep.

A broker that is down never fails the caller: the enqueue is logged and
``unscored_sweep`` (celery beat) re-queues whatever the current version has not scored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.conf import settings
from django.db import transaction

from ..models import ModelVersion, Prediction
from ..selectors import model_version_current_or_none, scenario_ids_missing_prediction
from .feature_cache import cached_scenario_ids

logger = logging.getLogger(__name__)

# A task whose features are all cached only runs the small head: thousands of pairs per
# task make a full rescore (MM-SCALE: 32k scenarios) a few tasks instead of a thousand.
CACHED_CHUNK_SIZE = 4096


def scoring_enqueue(
    *, scenario_ids: Sequence[int], model_version_id: int | None = None, chunk_size: int | None = None
) -> None:
    """Queue scoring of these scenarios once the current transaction commits.

    One task per ``chunk_size`` scenarios (default ``MORALE_SCORER_BATCH_SIZE``).
    Never raises: with the broker down the work is logged and left to the sweeper.
    """
    ids = sorted(set(scenario_ids))
    if not ids:
        return

    def _send() -> None:
        from ..tasks import score_scenarios  # tasks imports services: import it when sending

        size = chunk_size or settings.MORALE_SCORER_BATCH_SIZE
        try:
            for start in range(0, len(ids), size):
                score_scenarios.apply_async(
                    kwargs={"scenario_ids": ids[start : start + size], "model_version_id": model_version_id}
                )
        except Exception:  # noqa: BLE001 - any broker failure: the sweeper re-queues later
            logger.warning("Could not queue scoring of %d scenario(s); the sweeper will retry.", len(ids), exc_info=True)

    transaction.on_commit(_send)


def scoring_enqueue_for_version(*, model_version: ModelVersion, scenario_ids: Sequence[int]) -> None:
    """Queue these scenarios for ``model_version``: those with cached features in big head-only chunks."""
    cached = cached_scenario_ids(model_version.backbone_ref)
    scoring_enqueue(
        scenario_ids=[i for i in scenario_ids if i in cached],
        model_version_id=model_version.pk,
        chunk_size=CACHED_CHUNK_SIZE,
    )
    scoring_enqueue(scenario_ids=[i for i in scenario_ids if i not in cached], model_version_id=model_version.pk)


@transaction.atomic
def scenarios_rescore(*, scenario_ids: Sequence[int]) -> int:
    """Score these scenarios again with the current version (admin action, API).

    Drops the current version's predictions of them (failed ones included) and queues
    them once the transaction commits; until a worker has scored them, grounding checks on
    them wait as for a new scenario. Returns how many were queued (0: no current version).
    """
    version = model_version_current_or_none()
    ids = sorted(set(scenario_ids))
    if version is None or not ids:
        return 0
    Prediction.objects.filter(model_version=version, scenario_id__in=ids).delete()
    scoring_enqueue_for_version(model_version=version, scenario_ids=ids)
    return len(ids)


def unscored_sweep(*, limit: int = 5000) -> int:
    """Re-queue scenarios that the current version has not scored (e.g. the broker was down)."""
    version = model_version_current_or_none()
    if version is None:
        return 0
    ids = scenario_ids_missing_prediction(model_version=version, limit=limit)
    scoring_enqueue_for_version(model_version=version, scenario_ids=ids)
    return len(ids)
