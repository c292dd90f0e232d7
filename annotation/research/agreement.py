"""Agreement figures over the dataset's judgments: Krippendorff's alpha, modality agreement
and the rating distribution (paper, sections 3.2-3.4); plain JSON-ready dicts.

Definitions, and the sections the judgment selection below cites ("How the data is
read", "Which judgments"): docs/research-figures.md.
"""

from __future__ import annotations

import krippendorff
import numpy as np

from ..dataset.table import JudgmentTable, judgment_table
from ..models import ImportBatch
from .numbers import json_number, ratio

MODALITIES = ("text", "image", "both")
SCORES = (1, 2, 3, 4, 5)
_BOTH = MODALITIES.index("both")
NO_BATCH = "no batch"


# --- Krippendorff's alpha --------------------------------------------------------------------
def alpha_from_counts(value_counts: np.ndarray, *, level: str, value_domain) -> float | None:
    """Krippendorff's alpha (``krippendorff`` package) of a units x values count matrix.

    Units with fewer than two values are not pairable and are left out. None when alpha
    is undefined: no pairable values, or one value throughout (no expected disagreement).
    """
    counts = np.asarray(value_counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return None
    counts = counts[counts.sum(axis=1) >= 2]
    if counts.shape[0] == 0 or np.count_nonzero(counts.sum(axis=0)) < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        value = krippendorff.alpha(value_counts=counts, value_domain=list(value_domain), level_of_measurement=level)
    return json_number(value)


def _alphas(score_counts: np.ndarray, modality_counts: np.ndarray) -> dict:
    pairable = score_counts.sum(axis=1) >= 2
    return {
        "interval": alpha_from_counts(score_counts, level="interval", value_domain=SCORES),
        "ordinal": alpha_from_counts(score_counts, level="ordinal", value_domain=SCORES),
        "nominal_modality": alpha_from_counts(modality_counts, level="nominal", value_domain=MODALITIES),
        "units": int(pairable.sum()),
        "judgments": int(score_counts[pairable].sum()),
    }


def _batch_labels(batch_ids) -> dict[int, str]:
    ids = [int(b) for b in batch_ids if b >= 0]
    return {pk: f"#{pk} {name}" for pk, name in ImportBatch.objects.filter(pk__in=ids).values_list("pk", "file_name")}


def krippendorff_alphas(table: JudgmentTable | None = None) -> dict:
    """Alpha overall and per context batch (paper: 0.74 scores, 0.71 modality).

    ``{"overall": {"interval", "ordinal", "nominal_modality", "units", "judgments"},
    "by_batch": [{"batch_id" (None: no batch), "label", ...same keys}]}``, batches in id
    order after the "no batch" group.
    """
    table = table if table is not None else judgment_table()
    scores, modalities = table.score_counts(), table.modality_counts()
    result = {"overall": _alphas(scores, modalities), "by_batch": []}
    batches = np.unique(table.batch_ids)
    labels = _batch_labels(batches)
    for b in batches:
        mask = table.batch_ids == b
        entry = {
            "batch_id": None if b < 0 else int(b),
            "label": NO_BATCH if b < 0 else labels.get(int(b), f"#{int(b)}"),
        }
        entry.update(_alphas(scores[mask], modalities[mask]))
        result["by_batch"].append(entry)
    return result


# --- modality -------------------------------------------------------------------------------
def majority_modality(votes: np.ndarray) -> np.ndarray:
    """Per row of a units x 3 vote matrix: the index of the most-voted modality, ties "both";
    -1 for a row without votes (imported ratings whose modality is not known)."""
    top = votes.max(axis=1, keepdims=True)
    leaders = (votes == top).sum(axis=1)
    return np.where(top[:, 0] > 0, np.where(leaders == 1, votes.argmax(axis=1), _BOTH), -1)


def modality_agreement(table: JudgmentTable | None = None) -> dict:
    """Share of raters who name the scenario's majority modality, by majority modality.

    Over scenarios with at least two judgments. ``{"overall": share, "by_modality":
    {m: {"share", "units", "judgments", "agreeing"}}, "units", "tied_units"}``.
    """
    table = table if table is not None else judgment_table()
    votes = table.modality_counts()
    n = votes.sum(axis=1)
    votes, n = votes[n >= 2], n[n >= 2]
    top = votes.max(axis=1) if votes.size else np.zeros(0, dtype=np.int64)
    tied = (votes == top[:, None]).sum(axis=1) > 1 if votes.size else np.zeros(0, dtype=bool)
    majority = majority_modality(votes) if votes.size else np.zeros(0, dtype=np.int64)
    agreeing = votes[np.arange(votes.shape[0]), majority] if votes.size else np.zeros(0, dtype=np.int64)
    by_modality = {}
    for i, m in enumerate(MODALITIES):
        mask = majority == i
        by_modality[m] = {
            "share": ratio(agreeing[mask].sum(), n[mask].sum()),
            "units": int(mask.sum()),
            "judgments": int(n[mask].sum()),
            "agreeing": int(agreeing[mask].sum()),
        }
    return {
        "overall": ratio(agreeing.sum(), n.sum()),
        "by_modality": by_modality,
        "units": int(n.size),
        "tied_units": int(tied.sum()),
    }


def rating_distribution(table: JudgmentTable | None = None) -> dict:
    """Counts of each score by the judgment's modality (paper, fig. 5), and modality shares.

    ``{"counts": {m: [n of score 1, ..., n of score 5]}, "modality_share": {m: share},
    "total": n, "modality_unknown": n}``; imported ratings whose modality is not known are
    only in ``modality_unknown``.
    """
    table = table if table is not None else judgment_table()
    known = table.modality >= 0
    flat = np.bincount(table.modality[known] * 5 + (table.score[known] - 1), minlength=15).reshape(3, 5)
    total = int(flat.sum())
    return {
        "counts": {m: [int(v) for v in flat[i]] for i, m in enumerate(MODALITIES)},
        "modality_share": {m: ratio(flat[i].sum(), total) for i, m in enumerate(MODALITIES)},
        "total": total,
        "modality_unknown": int((~known).sum()),
    }
