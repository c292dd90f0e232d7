"""The gate: a candidate version becomes current only if it is no worse than the current one
on the figures annotators feel (NDCG@5, Unsafe Rate), measured on the same test lists.

Reads the current version's stored predictions; writes nothing (``training.services`` acts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from modelloop.models import ModelVersion, Prediction
from modelloop.scoring.offline import ScoreHead

from . import metrics
from .lists import ListData
from .probes.gate import probe_gate_reason
from .train import evaluate


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    candidate: dict
    current: dict | None


def version_metrics_on(version: ModelVersion, test: ListData, k: int = 5) -> tuple[dict, list[int]] | None:
    """The version's stored predictions, evaluated on the test lists it has scored fully.

    Returns (metrics, indices of the lists used), or None when it has scored none.
    """
    scores = dict(
        Prediction.objects.filter(
            model_version=version, scenario_id__in=test.scenario_ids, status=Prediction.Status.OK
        ).values_list("scenario_id", "score")
    )
    ids = np.array(test.scenario_ids)
    lists, used = [], []
    for n, (true, idx) in enumerate(test.lists()):
        preds = [scores.get(int(sid)) for sid in ids[idx]]
        if all(p is not None for p in preds):
            lists.append((true, np.array(preds, dtype=float)))
            used.append(n)
    if not lists:
        return None
    return metrics.evaluate_lists(lists, k=k), used


def gate_metrics(
    *, head: ScoreHead, test: ListData, test_metrics: dict, current: ModelVersion | None, k: int = 5
) -> tuple[dict, dict | None]:
    """(candidate, current) metrics on the same lists: the test lists the current version has
    scored fully. Without such lists: (test_metrics, None)."""
    compared = version_metrics_on(current, test, k=k) if current else None
    if compared is None:
        return test_metrics, None
    current_metrics, used = compared
    return evaluate(head, test.subset(used), k=k), current_metrics


def gate_decision(
    *, candidate: dict, current: dict | None, current_name: str, versions: tuple | None = None
) -> GateDecision:
    """Promote only if NDCG@5 and Unsafe Rate are no worse than the current version's on
    the same test lists, within MORALE_GATE_NDCG_TOLERANCE / MORALE_GATE_UNSAFE_TOLERANCE."""
    if current is None:
        return GateDecision(
            False,
            f"the current version {current_name} has no scores on the test split to compare with; "
            "the new version stays a candidate (promote it in the admin after checking it)",
            candidate,
            None,
        )
    ndcg_tol = settings.MORALE_GATE_NDCG_TOLERANCE
    unsafe_tol = settings.MORALE_GATE_UNSAFE_TOLERANCE
    new_ndcg, old_ndcg = candidate["ndcg@5"], current["ndcg@5"]
    new_unsafe, old_unsafe = candidate["unsafe_rate_pooled"], current["unsafe_rate_pooled"]
    problems = []
    if new_ndcg < old_ndcg - ndcg_tol:
        problems.append(f"NDCG@5 {new_ndcg:.4f} is below the current {old_ndcg:.4f} (tolerance {ndcg_tol})")
    # NaN: no unsafe scenario in the test lists, nothing to compare.
    if not (math.isnan(new_unsafe) or math.isnan(old_unsafe)) and new_unsafe > old_unsafe + unsafe_tol:
        problems.append(f"Unsafe Rate {new_unsafe:.4f} is above the current {old_unsafe:.4f} (tolerance {unsafe_tol})")
    if versions and (probe_problem := probe_gate_reason(*versions)):  # (candidate, current) ModelVersions
        problems.append(probe_problem)
    if problems:
        return GateDecision(False, f"not promoted over {current_name}: " + "; ".join(problems), candidate, current)
    return GateDecision(
        True,
        f"promoted over {current_name}: NDCG@5 {new_ndcg:.4f} vs {old_ndcg:.4f}, "
        f"Unsafe Rate {new_unsafe:.4f} vs {old_unsafe:.4f} on the same test lists",
        candidate,
        current,
    )
