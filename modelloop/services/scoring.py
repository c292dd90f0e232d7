"""Scoring scenarios with a version and storing the predictions (what a scoring task runs).

A bad pair fails alone; a batch that runs out of GPU memory is halved
(``scoring.batching.halve_on_oom``); scores are calibrated, clipped to 1-5 and stored once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ..models import ModelVersion, Prediction
from ..scoring import FeatureScorer, Scorer, ScoringInput, ScoringResult
from ..scoring.batching import OUT_OF_MEMORY, halve_on_oom
from ..selectors import scenario_ids_unscored_among, scoring_inputs_for
from .feature_cache import SCENARIO_NOT_FOUND, features_for
from .loading import scorer_for


def scenarios_score(*, scenario_ids: Sequence[int], model_version: ModelVersion) -> int:
    """Score the scenarios that this version has no prediction for yet; store the results.

    A ``FeatureScorer`` reads cached backbone features and runs the backbone only for the
    rest; other scorers score in batches of ``MORALE_SCORER_BATCH_SIZE``. Either way a
    batch that runs out of GPU memory is split in halves, and a bad pair fails alone.
    Raises ScoringError when the version cannot be loaded (nothing is stored then).
    """
    todo = scenario_ids_unscored_among(scenario_ids=scenario_ids, model_version=model_version)
    if not todo:
        return 0
    scorer = scorer_for(model_version)
    if isinstance(scorer, FeatureScorer):
        results = _score_with_features(scorer, todo)
    else:
        results = _score_in_batches(scorer, scoring_inputs_for(scenario_ids=todo))
    return predictions_store(model_version=model_version, results=calibration_apply(model_version.calibration, results))


def _score_with_features(scorer: FeatureScorer, scenario_ids: Sequence[int]) -> list[ScoringResult]:
    """Head over cached or freshly computed features: a promoted head with a cached backbone never runs it."""
    features, errors = features_for(scorer, scenario_ids)
    ok_rows = [row for row, error in enumerate(errors) if not error]
    scores = scorer.head_scores(features[ok_rows]).tolist() if ok_rows else []
    score_of = dict(zip(ok_rows, scores))
    return [
        ScoringResult(scenario_id, score_of[row]) if not error else ScoringResult(scenario_id, None, error)
        for row, (scenario_id, error) in enumerate(zip(scenario_ids, errors))
        if error != SCENARIO_NOT_FOUND
    ]


def _score_in_batches(scorer: Scorer, inputs: list[ScoringInput]) -> list[ScoringResult]:
    size = settings.MORALE_SCORER_BATCH_SIZE
    results: list[ScoringResult] = []
    for start in range(0, len(inputs), size):
        results += halve_on_oom(
            scorer.score, inputs[start : start + size], lambda item: ScoringResult(item.scenario_id, None, OUT_OF_MEMORY)
        )
    return results


def calibration_apply(calibration: dict, results: Sequence[ScoringResult]) -> list[ScoringResult]:
    """Map the scorer's scores through the version's calibration (checked when the scorer
    was loaded, see ``models.validate_calibration``); failed results pass unchanged."""
    method = (calibration or {}).get("method", "builtin")
    if method == "linear":
        slope, intercept = calibration["slope"], calibration["intercept"]

        def mapped(score: float) -> float:
            return slope * score + intercept
    elif method == "isotonic":
        import numpy as np

        x, y = calibration["x"], calibration["y"]

        def mapped(score: float) -> float:
            return float(np.interp(score, x, y))
    else:  # "builtin": the scorer's own 1-5 mapping
        return list(results)
    return [ScoringResult(r.scenario_id, mapped(r.score)) if r.ok else r for r in results]


def predictions_store(*, model_version: ModelVersion, results: Sequence[ScoringResult]) -> int:
    """Write results; a scenario this version already has a prediction for is left alone.

    Idempotent, so a task that is delivered twice (acks_late after a killed worker)
    stores each prediction once. Scores are clipped to 1-5; a NaN or infinite score is
    stored as a failure. Returns the number of results written or kept.

    One SQL statement, not ``bulk_create``: building and preparing 32k model instances
    took longer than the whole head-only rescore they come from (bench/score.py).
    """
    rows = []
    for r in results:
        score = float(r.score) if r.ok else math.nan
        if math.isfinite(score):
            rows.append((r.scenario_id, Prediction.Status.OK.value, min(5.0, max(1.0, score)), ""))
        else:
            error = (r.error or "unknown error") if not r.ok else f"the scorer returned a non-finite score ({r.score})"
            rows.append((r.scenario_id, Prediction.Status.FAILED.value, None, error[:2000]))
    if rows:
        _insert_predictions(model_version.pk, rows)
    return len(rows)


def _insert_predictions(model_version_id: int, rows: list[tuple[int, str, float | None, str]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING of (scenario id, status, score, error) rows.

    PostgreSQL takes the columns as arrays (one statement, one round trip); SQLite runs
    the statement per row inside its C loop (``executemany``), which is as fast in-process.
    """
    table = connection.ops.quote_name(Prediction._meta.db_table)
    columns = "model_version_id, scenario_id, status, score, error, created_at"
    conflict = "ON CONFLICT (model_version_id, scenario_id) DO NOTHING"
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Predictions are derived data: a crash that loses the last commits only leaves
            # scenarios unscored, which the sweeper re-queues. Not waiting for the WAL flush
            # took 0.4 s off a 32k rescore (8 commits) and ~4 ms off every scoring task.
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
            scenario_ids, statuses, scores, errors = (list(column) for column in zip(*rows))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT %s, s, st, sc, e, %s "
                f"FROM unnest(%s::bigint[], %s::varchar[], %s::float8[], %s::text[]) AS t(s, st, sc, e) {conflict}",
                [model_version_id, now, scenario_ids, statuses, scores, errors],
            )
        else:
            cursor.executemany(
                f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s, %s) {conflict}",
                [(model_version_id, *row, now) for row in rows],
            )
