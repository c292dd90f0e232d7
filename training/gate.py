"""The gate: a candidate version becomes current only if it is no worse than the current one
on the figures annotators feel, measured on the same test lists: the order (NDCG@5), the
unsafe scenarios passed as acceptable (Unsafe Rate) and the score itself (MAE against the
human mean: the score an annotator is shown and that decides their grounding checks).
ECE and the share of judgments that would get a grounding check are reported beside them.

Reads the current version's stored predictions; writes nothing (``training.services`` acts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from modelloop.models import ModelVersion, Prediction
from modelloop.scoring.offline import ScoreHead

from .lists import ListData
from .probes.gate import probe_gate_reason
from .train import evaluate, evaluate_scores


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
    used = []
    for n, (_, idx) in enumerate(test.lists()):
        if all(scores.get(int(sid)) is not None for sid in ids[idx]):
            used.append(n)
    if not used:
        return None
    scored = test.subset(used)
    pred = np.array([scores[sid] for sid in scored.scenario_ids], dtype=float)
    return evaluate_scores(pred, scored, k=k), used


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
    """Promote only if NDCG@5, Unsafe Rate and MAE are no worse than the current version's on
    the same test lists, within MORALE_GATE_NDCG_TOLERANCE / MORALE_GATE_UNSAFE_TOLERANCE /
    MORALE_GATE_MAE_TOLERANCE: a version whose absolute scores are worse is refused whatever
    its ranking. With ``versions`` (candidate, current ModelVersion) the probe options
    (MORALE_GATE_MAX_FLIP_RATE_INCREASE, MORALE_GATE_MAX_REL_MCE) apply too."""
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
    mae_tol = settings.MORALE_GATE_MAE_TOLERANCE
    new_mae, old_mae = candidate.get("mae", math.nan), current.get("mae", math.nan)
    if math.isnan(new_mae):
        problems.append("the candidate's MAE is unknown")
    elif not math.isnan(old_mae) and new_mae > old_mae + mae_tol:
        problems.append(
            f"MAE {new_mae:.4f} against the human mean is above the current {old_mae:.4f} (tolerance {mae_tol}): "
            "its scores are further from what annotators give"
        )
    if versions and (probe_problem := probe_gate_reason(*versions)):  # (candidate, current) ModelVersions
        problems.append(probe_problem)
    if problems:
        return GateDecision(False, f"not promoted over {current_name}: " + "; ".join(problems), candidate, current)
    return GateDecision(
        True,
        f"promoted over {current_name}: NDCG@5 {new_ndcg:.4f} vs {old_ndcg:.4f}, "
        f"Unsafe Rate {new_unsafe:.4f} vs {old_unsafe:.4f}, MAE {new_mae:.4f} vs {old_mae:.4f}, "
        f"ECE {_num(candidate.get('ece'))} vs {_num(current.get('ece'))}, grounding checks "
        f"{_num(candidate.get('grounding_share'))} vs {_num(current.get('grounding_share'))} of judgments "
        "on the same test lists",
        candidate,
        current,
    )


def _num(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
