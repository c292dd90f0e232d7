"""Per-scenario (item) figures over the dataset's judgments: shifts of the mean score from the
text-only label (paper, table 2 and fig. 6) and the dispersion that flags high-variance
scenarios (section 3.3), with the list the quality page shows. Definitions: docs/research-figures.md."""

from __future__ import annotations

import numpy as np
from django.conf import settings

from ..models import Scenario
from ..dataset.table import JudgmentTable, judgment_table
from .agreement import MODALITIES, majority_modality
from .numbers import json_number, ratio


# --- shifts against text-only labels ---------------------------------------------------------
def text_label_scores() -> dict[int, float]:
    """Where the text-only labels -1, 0, +1 sit on the 1-5 scale (``MORALE_TEXT_LABEL_SCORES``)."""
    values = [float(v) for v in settings.MORALE_TEXT_LABEL_SCORES]
    if len(values) != 3 or not all(1 <= v <= 5 for v in values):
        raise ValueError("MORALE_TEXT_LABEL_SCORES must be three numbers on the 1-5 scale (for -1, 0, +1)")
    return {-1: values[0], 0: values[1], 1: values[2]}


SHIFT_NEUTRAL_BAND = 0.5
EXTREME_SHIFT = 3.0


def _shift_counts(shift: np.ndarray) -> dict:
    up = int((shift >= SHIFT_NEUTRAL_BAND).sum())
    down = int((shift <= -SHIFT_NEUTRAL_BAND).sum())
    return {
        "up": up,
        "neutral": int(shift.size - up - down),
        "down": down,
        "total": int(shift.size),
        "extreme": int((np.abs(shift) >= EXTREME_SHIFT).sum()),
        "extreme_up": int((shift >= EXTREME_SHIFT).sum()),
        "extreme_down": int((shift <= -EXTREME_SHIFT).sum()),
        "mean_shift": json_number(shift.mean()) if shift.size else None,
        "divergent_share": ratio(up + down, shift.size),
    }


def judgment_shifts(table: JudgmentTable | None = None) -> dict:
    """Shifts of the mean human score from the text-only label, by majority modality.

    docs/research-figures.md gives the mapping and the bands. ``{"mapping": {"-1": 1.0,
    ...}, "neutral_band", "extreme_at", "by_modality": {m: counts}, "by_label": {"-1":
    {m: counts}, ...}, "overall": counts}``; counts are ``up``, ``neutral``, ``down``,
    ``total``, ``extreme`` (+ ``extreme_up``/``extreme_down``), ``mean_shift`` and
    ``divergent_share`` (up + down over total).
    """
    table = table if table is not None else judgment_table()
    mapping = text_label_scores()
    n = table.unit_counts()
    sums = np.bincount(table.unit, weights=table.score, minlength=table.n_units)
    labelled = ~np.isnan(table.labels) & (n > 0)
    mean = sums[labelled] / n[labelled]
    labels = table.labels[labelled].astype(np.int64)
    target = np.array([mapping[int(v)] for v in labels], dtype=float)
    shift = mean - target
    majority = majority_modality(table.modality_counts()[labelled]) if labelled.any() else np.zeros(0, np.int64)
    result = {
        "mapping": {str(k): v for k, v in mapping.items()},
        "neutral_band": SHIFT_NEUTRAL_BAND,
        "extreme_at": EXTREME_SHIFT,
        "overall": _shift_counts(shift),
        "by_modality": {m: _shift_counts(shift[majority == i]) for i, m in enumerate(MODALITIES)},
        "by_label": {},
    }
    for label in (-1, 0, 1):
        mask = labels == label
        result["by_label"][str(label)] = {
            m: _shift_counts(shift[mask & (majority == i)]) for i, m in enumerate(MODALITIES)
        }
    return result


# --- item dispersion (high-variance items) ---------------------------------------------------
def item_dispersion(table: JudgmentTable | None = None, *, max_sd: float | None = None) -> dict:
    """Scenarios whose sample sd (ddof=1) is above ``max_sd`` (default ``MORALE_EXPORT_MAX_SD``).

    The export drops them (paper, section 3.3: sd > 1.2, about 4.8%). ``{"max_sd",
    "scenarios" (with a judgment), "with_sd" (>= 2 judgments), "flagged", "share"
    (flagged / scenarios), "flagged_ids", "flagged_sd", "flagged_mean", "flagged_n"}``
    (the flagged lists in descending sd).
    """
    table = table if table is not None else judgment_table()
    max_sd = settings.MORALE_EXPORT_MAX_SD if max_sd is None else max_sd
    n = table.unit_counts()
    sums = np.bincount(table.unit, weights=table.score, minlength=table.n_units)
    mean = np.divide(sums, n, out=np.zeros(table.n_units), where=n > 0)
    dev = table.score - mean[table.unit]
    ss = np.bincount(table.unit, weights=dev * dev, minlength=table.n_units)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.where(n > 1, np.sqrt(ss / (n - 1)), np.nan)
    flagged = np.flatnonzero((n > 1) & (sd > max_sd))
    flagged = flagged[np.argsort(-sd[flagged], kind="stable")]
    return {
        "max_sd": max_sd,
        "scenarios": int((n > 0).sum()),
        "with_sd": int((n > 1).sum()),
        "flagged": int(flagged.size),
        "share": ratio(flagged.size, (n > 0).sum()),
        "flagged_ids": [int(v) for v in table.scenario_ids[flagged]],
        "flagged_sd": [float(v) for v in sd[flagged]],
        "flagged_mean": [float(v) for v in mean[flagged]],
        "flagged_n": [int(v) for v in n[flagged]],
    }


def flagged_items(*, max_sd: float | None = None, limit: int | None = 100, table=None) -> dict:
    """Scenarios whose score sd (ddof=1, over the judgments an export uses) is above
    ``max_sd`` (default ``MORALE_EXPORT_MAX_SD``): the items the export drops.

    ``{"max_sd", "scenarios", "with_sd", "flagged", "share", "items": [{"scenario_id",
    "context_id", "text", "n", "mean", "sd", "scores"}]}``, highest sd first, at most
    ``limit`` items (None: all); ``share`` is flagged / scenarios with a judgment (the
    paper removes about 4.8%).
    """
    table = table if table is not None else judgment_table()
    dispersion = item_dispersion(table, max_sd=max_sd)
    ids = dispersion["flagged_ids"] if limit is None else dispersion["flagged_ids"][:limit]
    texts = {pk: (context_id, text) for pk, context_id, text in Scenario.objects.filter(pk__in=ids).values_list("pk", "context_id", "text")}
    units = np.searchsorted(table.scenario_ids, np.asarray(ids, dtype=np.int64))
    wanted = np.isin(table.unit, units)
    scores: dict[int, list[int]] = {}
    for unit, score in zip(table.unit[wanted].tolist(), table.score[wanted].tolist()):
        scores.setdefault(unit, []).append(score)
    items = []
    for i, pk in enumerate(ids):
        context_id, text = texts.get(pk, (None, ""))
        items.append(
            {
                "scenario_id": pk,
                "context_id": context_id,
                "text": text,
                "n": dispersion["flagged_n"][i],
                "mean": dispersion["flagged_mean"][i],
                "sd": dispersion["flagged_sd"][i],
                "scores": sorted(scores.get(int(units[i]), [])),
            }
        )
    return {k: dispersion[k] for k in ("max_sd", "scenarios", "with_sd", "flagged", "share")} | {"items": items}
