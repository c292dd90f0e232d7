"""Reads of the model loop: the current version, its predictions, the score shown, and the
scorer inputs of scenarios.

Imported by annotation's services and selectors (the annotator flow) and by training's
gate; it imports annotation only for ``annotation.models``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from annotation.models import Scenario

from .models import ModelVersion, Prediction, content_key
from .scoring import ScoringInput


class NoCurrentModelVersion(Exception):
    pass


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
    qs = (
        Scenario.objects.filter(is_retired=False, context__is_active=True)
        .exclude(predictions__model_version=model_version)
        .order_by("id")
        .values_list("id", flat=True)
    )
    return list(qs[:limit] if limit else qs)


def scenario_ids_unscored_among(*, scenario_ids: Iterable[int], model_version: ModelVersion) -> list[int]:
    """Those of these scenarios that exist and this version has neither scored nor failed on, in id order."""
    return list(
        Scenario.objects.filter(pk__in=list(scenario_ids))
        .exclude(predictions__model_version=model_version)
        .order_by("id")
        .values_list("id", flat=True)
    )


def scoring_pairs(*, scenario_ids: Sequence[int]) -> list[tuple[ScoringInput, str]]:
    """(scorer input, feature-cache content key) of each scenario that exists, in id order."""
    scenarios = Scenario.objects.filter(pk__in=scenario_ids).select_related("context").order_by("id")
    return [
        (
            ScoringInput(scenario_id=s.pk, image_path=s.context.image.path, setting=s.context.setting, text=s.text),
            content_key(s.context.image_sha256, s.context.setting, s.text),
        )
        for s in scenarios
    ]


def scoring_inputs_for(*, scenario_ids: Sequence[int]) -> list[ScoringInput]:
    """What a scorer reads for each scenario that exists, in id order."""
    return [item for item, _ in scoring_pairs(scenario_ids=scenario_ids)]


@dataclass(frozen=True)
class ShownScores:
    """The model's score that an annotator is shown for each scenario: the one rule.

    ``version`` is the version the scores come from (the current one). ``score(id)`` is
    its 1-5 score, or None when the version failed on the pair or has not scored it yet;
    ``pending(id)`` tells the two apart (no prediction yet: scoring is still to come).
    """

    version: ModelVersion | None
    _scores: dict[int, float | None]

    def score(self, scenario_id: int) -> float | None:
        return self._scores.get(scenario_id)

    def pending(self, scenario_id: int) -> bool:
        return scenario_id not in self._scores


def scores_shown(*, scenario_ids: Iterable[int]) -> ShownScores:
    """The current version's scores of these scenarios as annotators see them.

    One query when every scenario has a prediction (the version comes joined with them),
    a second one for the version otherwise."""
    ids = list(scenario_ids)
    predictions = {
        p.scenario_id: p
        for p in Prediction.objects.filter(model_version__is_current=True, scenario_id__in=ids).select_related(
            "model_version"
        )
    }
    if predictions and len(predictions) == len(set(ids)):
        version = next(iter(predictions.values())).model_version
    else:
        version = model_version_current_or_none()
    return ShownScores(
        version,
        {sid: (p.score if p.status == Prediction.Status.OK else None) for sid, p in predictions.items()},
    )


def model_version_previous(current: ModelVersion | None) -> ModelVersion | None:
    """The version current before `current`: the latest promoted version other than it."""
    if current is None:
        return None
    return ModelVersion.objects.exclude(pk=current.pk).filter(promoted_at__isnull=False).order_by("-promoted_at", "-id").first()


def current_and_previous_scores(*, scenario_ids: Iterable[int]) -> tuple[dict[int, float], dict[int, float]]:
    """Scores of these scenarios by the current version and by the one current before it
    (scored pairs only; a missing id: not scored). For routing toward the model's doubt."""
    ids = list(scenario_ids)
    current = model_version_current_or_none()
    out = []
    for version in (current, model_version_previous(current)):
        if version is None:
            out.append({})
            continue
        out.append(
            dict(
                Prediction.objects.filter(model_version=version, scenario_id__in=ids, status=Prediction.Status.OK)
                .values_list("scenario_id", "score")
            )
        )
    return out[0], out[1]
