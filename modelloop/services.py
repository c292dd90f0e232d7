"""Model versions, predictions and the queueing of scoring work.

Scoring itself runs in Celery workers (``modelloop.tasks``); the web process only reads
predictions and queues work after commit. A broker that is down never fails a web
request: the enqueue is logged and the periodic sweeper re-queues what has no score.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .models import ModelVersion, Prediction
from .scoring import Scorer, ScoringInput, ScoringResult, scorer_registry

logger = logging.getLogger(__name__)


class NoCurrentModelVersion(Exception):
    pass


# --- selectors ---------------------------------------------------------------------------
def model_version_current() -> ModelVersion:
    version = ModelVersion.objects.filter(is_current=True).first()
    if version is None:
        raise NoCurrentModelVersion("No model version is current; promote one in the admin.")
    return version


def model_version_current_or_none() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_current=True).first()


def predictions_for(*, scenario_ids: Iterable[int], model_version: ModelVersion | None) -> dict[int, Prediction]:
    """The given version's predictions for these scenarios, by scenario id (missing: not scored)."""
    if model_version is None:
        return {}
    rows = Prediction.objects.filter(model_version=model_version, scenario_id__in=list(scenario_ids))
    return {p.scenario_id: p for p in rows}


def scenario_ids_missing_prediction(*, model_version: ModelVersion, limit: int | None = None) -> list[int]:
    """Active scenarios that this version has neither scored nor failed on, oldest first."""
    from annotation.models import Scenario

    qs = (
        Scenario.objects.filter(is_retired=False, context__is_active=True)
        .exclude(predictions__model_version=model_version)
        .order_by("id")
        .values_list("id", flat=True)
    )
    return list(qs[:limit] if limit else qs)


# --- scoring ------------------------------------------------------------------------------
_scorer_cache: dict[tuple[int, str], Scorer] = {}
_scorer_lock = threading.Lock()


def scorer_for(model_version: ModelVersion) -> Scorer:
    """The loaded scorer of a version, built once per process (workers keep it warm)."""
    key = (model_version.pk, model_version.scorer)
    with _scorer_lock:
        scorer = _scorer_cache.get(key)
        if scorer is None:
            registry = scorer_registry()
            if model_version.scorer not in registry:
                raise ValueError(
                    f"Model version {model_version.name!r} names scorer {model_version.scorer!r}, "
                    f"which is not one of {sorted(registry)}."
                )
            head_path = model_version.head_weights.path if model_version.head_weights else None
            scorer = registry[model_version.scorer](config=model_version.config, head_weights_path=head_path)
            _scorer_cache[key] = scorer
    return scorer


def scoring_inputs_for(*, scenario_ids: Sequence[int]) -> list[ScoringInput]:
    from annotation.models import Scenario

    scenarios = Scenario.objects.filter(pk__in=scenario_ids).select_related("context").order_by("id")
    return [
        ScoringInput(
            scenario_id=s.pk, image_path=s.context.image.path, setting=s.context.setting, text=s.text
        )
        for s in scenarios
    ]


def predictions_store(*, model_version: ModelVersion, results: Sequence[ScoringResult]) -> int:
    """Write results; a scenario this version already has a prediction for is left alone.

    Idempotent, so a task that is delivered twice (acks_late after a killed worker)
    stores each prediction once. Returns the number of results written or kept.
    """
    rows = [
        Prediction(
            model_version=model_version,
            scenario_id=r.scenario_id,
            status=Prediction.Status.OK if r.ok else Prediction.Status.FAILED,
            score=min(5.0, max(1.0, float(r.score))) if r.ok else None,
            error="" if r.ok else (r.error or "unknown error")[:2000],
        )
        for r in results
    ]
    Prediction.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def scenarios_score(*, scenario_ids: Sequence[int], model_version: ModelVersion) -> int:
    """Score the scenarios that this version has no prediction for yet; store the results."""
    done = set(
        Prediction.objects.filter(model_version=model_version, scenario_id__in=scenario_ids).values_list(
            "scenario_id", flat=True
        )
    )
    todo = [sid for sid in scenario_ids if sid not in done]
    if not todo:
        return 0
    inputs = scoring_inputs_for(scenario_ids=todo)
    results = scorer_for(model_version).score(inputs)
    return predictions_store(model_version=model_version, results=results)


# --- queueing -----------------------------------------------------------------------------
def scoring_enqueue(*, scenario_ids: Sequence[int], model_version_id: int | None = None) -> None:
    """Queue scoring of these scenarios once the current transaction commits.

    Never raises: with the broker down the work is logged and left to the sweeper.
    """
    ids = sorted(set(scenario_ids))
    if not ids:
        return

    def _send() -> None:
        from django.conf import settings

        from .tasks import score_scenarios

        batch = settings.MORALE_SCORER_BATCH_SIZE
        try:
            for start in range(0, len(ids), batch):
                score_scenarios.apply_async(
                    kwargs={"scenario_ids": ids[start : start + batch], "model_version_id": model_version_id}
                )
        except Exception:  # noqa: BLE001 - any broker failure: the sweeper re-queues later
            logger.warning("Could not queue scoring of %d scenario(s); the sweeper will retry.", len(ids), exc_info=True)

    transaction.on_commit(_send)


def unscored_sweep(*, limit: int = 5000) -> int:
    """Re-queue scenarios that the current version has not scored (e.g. the broker was down)."""
    version = model_version_current_or_none()
    if version is None:
        return 0
    ids = scenario_ids_missing_prediction(model_version=version, limit=limit)
    scoring_enqueue(scenario_ids=ids, model_version_id=version.pk)
    return len(ids)


# --- versions -----------------------------------------------------------------------------
def model_version_create(
    *, name: str, scorer: str, description: str = "", config: dict | None = None
) -> ModelVersion:
    if scorer not in scorer_registry():
        raise ValidationError({"scorer": f"Unknown scorer {scorer!r}; choose one of {sorted(scorer_registry())}."})
    version = ModelVersion(name=name, scorer=scorer, description=description, config=config or {})
    version.full_clean()
    version.save()
    return version


@transaction.atomic
def model_version_promote(*, model_version: ModelVersion) -> ModelVersion:
    """Make this version the current one and queue scoring of every scenario with it.

    The switch is one transaction: the old current row is cleared and the new one set
    while the row locks are held, so readers see exactly one current version.
    """
    # Lock both rows so that two promotions queue up instead of interleaving.
    list(ModelVersion.objects.select_for_update().filter(Q(pk=model_version.pk) | Q(is_current=True)))
    ModelVersion.objects.filter(is_current=True).exclude(pk=model_version.pk).update(is_current=False)
    ModelVersion.objects.filter(pk=model_version.pk).update(is_current=True, promoted_at=timezone.now())
    model_version.refresh_from_db()
    scoring_enqueue(
        scenario_ids=scenario_ids_missing_prediction(model_version=model_version), model_version_id=model_version.pk
    )
    return model_version
