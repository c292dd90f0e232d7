"""Agreement and analysis figures for researchers (paper, sections 3.2-3.4, appendix 11).

Every function returns plain dicts and lists (JSON-serialisable: numbers, strings, None
for an undefined value, dates as ISO strings), so the dashboard, the API and a notebook
read the same figures. ``dashboard_bundle`` computes them all from one snapshot and
caches the result for ``MORALE_DASHBOARD_CACHE_SECONDS``.

How the data is read
====================

``load_rows`` reads every judgment row with one ``values_list`` query without joins, in
whole numbers only (the database encodes modality, phase, "has a model score", "is a
disagreement" and the UTC day), plus one query for the scenario columns: about 0.5 s for
MM-SCALE's 97,000 judgments on SQLite. Everything else is numpy on those arrays. Each
function takes ``rows=`` (or ``table=``) so that one snapshot serves them all; called
alone, it reads its own.

Which judgments
===============

Figures about the *dataset* (agreement, modality agreement, rating distribution, shifts
against text-only labels, high-variance items) use the judgments an export would use
(``annotation.exports``; ``judgment_table``):

- canary (gold) scenarios are left out: they are attention checks, not data;
- judgments of annotators who are screened out *now* are left out, unless
  ``MORALE_EXPORT_INCLUDE_SCREENED``;
- one judgment per annotator and scenario, as ``MORALE_EXPORT_SOURCE`` says:
  ``reconfirmed`` (the answer after a grounding check where there is one, else the
  initial one) or ``initial``.

Figures about the *process* use every row: the disagreement rate (all initial judgments
that had a model score), the revision rate (every grounding check answered) and the
collection progress.

Definitions
===========

- **Krippendorff's alpha** with the ``krippendorff`` package, from a units x values
  count matrix (``value_counts``, the reliability data in compact form): interval and
  ordinal over the scores 1-5 (value domain 1..5), nominal over the modality (text,
  image, both). Units are scenarios with at least two judgments (the only pairable ones).
  Overall and per context batch (``Context.import_batch``; contexts without one form one
  "no batch" group). ``None`` where alpha is undefined (no pairable values, or a single
  value throughout).
- **Majority modality** of a scenario: the modality with the most votes, ties "both"
  (the export's rule, so the dashboard and the exported ``majority_modality`` agree).
- **Modality agreement** for modality m: over the scenarios with >= 2 judgments whose
  majority is m, the share of their judgments that name m (paper: 82% text, 61% image).
- **Revision rate**: reconfirmed judgments whose score differs from the initial one,
  over grounding checks answered (reconfirmed rows); also the checks offered (initial
  judgments with delta >= ``MORALE_DISAGREEMENT_THRESHOLD``) and how many answers changed
  the modality. Per annotator and overall (paper: < 7%).
- **Judgment shifts** (paper, table 2 and fig. 6): per scenario with a text-only label
  and at least one judgment, ``shift = mean score - mapped label``, where the label maps
  onto the 1-5 scale by ``MORALE_TEXT_LABEL_SCORES`` (default -1 -> 1, 0 -> 3, +1 -> 5:
  the affine map of NormBank's [-1, 1] onto [1, 5], "you should not" at the unacceptable
  end, "it's okay" at the neutral middle, "you should" at the acceptable end).
  ``shift >= 0.5`` is "more acceptable", ``<= -0.5`` "less acceptable", in between
  "neutral" (the mean rounds to the label's point); ``|shift| >= 3`` is an extreme shift
  (paper: "a change of three or more points"). Counted per scenario (the paper's table 2
  counts scenarios) by the scenario's majority modality, and by label x modality
  (fig. 6b).
- **Disagreement rate**: initial judgments with ``delta >= MORALE_DISAGREEMENT_THRESHOLD``
  over initial judgments with a model score, per day (UTC) and per model version.
- **Progress**: targets are ``MORALE_JUDGMENTS_PER_SCENARIO`` initial judgments for
  every non-canary, non-retired scenario of an active context (the per-scenario counter
  the assignment uses); a context is done when all its such scenarios are.
"""

from __future__ import annotations

import math

import krippendorff
import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db.models import Count
from django.utils import timezone

from .dataset.selection import pair_key as _pair_key
from .dataset.table import JudgmentRows, JudgmentTable, judgment_table, load_rows  # noqa: F401 - callers use analysis.X
from .models import Annotator, ImportBatch

MODALITIES = ("text", "image", "both")
SCORES = (1, 2, 3, 4, 5)
_BOTH = MODALITIES.index("both")
NO_BATCH = "no batch"
DASHBOARD_CACHE_KEY = "morale:research-dashboard:v1"


def _num(x) -> float | None:
    """A JSON-friendly float: None for NaN/inf/None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _share(part, whole) -> float | None:
    return float(part) / float(whole) if whole else None


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
    return _num(value)


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
    """Per row of a units x 3 vote matrix: the index of the most-voted modality, ties "both"."""
    top = votes.max(axis=1, keepdims=True)
    leaders = (votes == top).sum(axis=1)
    return np.where(leaders == 1, votes.argmax(axis=1), _BOTH)


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
            "share": _share(agreeing[mask].sum(), n[mask].sum()),
            "units": int(mask.sum()),
            "judgments": int(n[mask].sum()),
            "agreeing": int(agreeing[mask].sum()),
        }
    return {
        "overall": _share(agreeing.sum(), n.sum()),
        "by_modality": by_modality,
        "units": int(n.size),
        "tied_units": int(tied.sum()),
    }


def rating_distribution(table: JudgmentTable | None = None) -> dict:
    """Counts of each score by the judgment's modality (paper, fig. 5), and modality shares.

    ``{"counts": {m: [n of score 1, ..., n of score 5]}, "modality_share": {m: share},
    "total": n}``.
    """
    table = table if table is not None else judgment_table()
    flat = np.bincount(table.modality * 5 + (table.score - 1), minlength=15).reshape(3, 5)
    total = int(flat.sum())
    return {
        "counts": {m: [int(v) for v in flat[i]] for i, m in enumerate(MODALITIES)},
        "modality_share": {m: _share(flat[i].sum(), total) for i, m in enumerate(MODALITIES)},
        "total": total,
    }


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
        "mean_shift": _num(shift.mean()) if shift.size else None,
        "divergent_share": _share(up + down, shift.size),
    }


def judgment_shifts(table: JudgmentTable | None = None) -> dict:
    """Shifts of the mean human score from the text-only label, by majority modality.

    See the module docstring for the mapping and the bands. ``{"mapping": {"-1": 1.0,
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
        "share": _share(flagged.size, (n > 0).sum()),
        "flagged_ids": [int(v) for v in table.scenario_ids[flagged]],
        "flagged_sd": [float(v) for v in sd[flagged]],
        "flagged_mean": [float(v) for v in mean[flagged]],
        "flagged_n": [int(v) for v in n[flagged]],
    }


# --- process figures ----------------------------------------------------------------------------
def revision_rates(*, rows: JudgmentRows | None = None, per_annotator_limit: int | None = None) -> dict:
    """How often a grounding check changed the answer (anchoring on the model; paper < 7%).

    ``{"overall": {"checks_offered", "checks_answered", "revised", "modality_changed",
    "rate", "modality_rate"}, "per_annotator": [{"annotator_id", "username", ...same}],
    "annotators"}``: annotators with an answered check, highest rate first
    (``per_annotator_limit`` cuts the list, not ``annotators``).
    """
    rows = rows if rows is not None else load_rows()
    initial = ~rows.reconfirmed
    # Pair each reconfirmed row with its initial one: same (annotator, scenario).
    key = _pair_key(rows.annotator, rows.scenario)
    initial_rows = np.flatnonzero(initial)
    order = np.argsort(key[initial_rows], kind="stable")
    sorted_keys = key[initial_rows][order]
    answered = np.flatnonzero(rows.reconfirmed)
    if sorted_keys.size:
        where = np.minimum(np.searchsorted(sorted_keys, key[answered]), sorted_keys.size - 1)
        first = initial_rows[order[where]]
        ok = key[first] == key[answered]
    else:
        first, ok = answered, np.zeros(answered.size, dtype=bool)
    answered, first = answered[ok], first[ok]
    revised = rows.score[answered] != rows.score[first]
    changed = rows.modality[answered] != rows.modality[first]
    offered_ids, offered_n = np.unique(rows.annotator[initial & rows.disagrees], return_counts=True)
    offered = dict(zip(offered_ids.tolist(), offered_n.tolist()))

    ids, inverse = np.unique(rows.annotator[answered], return_inverse=True)
    n_answered = np.bincount(inverse, minlength=ids.size)
    n_revised = np.bincount(inverse, weights=revised, minlength=ids.size).astype(np.int64)
    n_changed = np.bincount(inverse, weights=changed, minlength=ids.size).astype(np.int64)

    def figures(offered_n, answered_n, revised_n, changed_n) -> dict:
        return {
            "checks_offered": int(offered_n),
            "checks_answered": int(answered_n),
            "revised": int(revised_n),
            "modality_changed": int(changed_n),
            "rate": _share(revised_n, answered_n),
            "modality_rate": _share(changed_n, answered_n),
        }

    per_annotator = [
        {"annotator_id": int(a), **figures(offered.get(int(a), 0), n_answered[i], n_revised[i], n_changed[i])}
        for i, a in enumerate(ids)
    ]
    per_annotator.sort(key=lambda r: (-(r["rate"] or 0), -r["checks_answered"], r["annotator_id"]))
    if per_annotator_limit is not None:
        per_annotator = per_annotator[:per_annotator_limit]
    usernames = dict(
        Annotator.objects.filter(pk__in=[r["annotator_id"] for r in per_annotator]).values_list("pk", "user__username")
    )
    for r in per_annotator:
        r["username"] = usernames.get(r["annotator_id"], "")
    return {
        "overall": figures(sum(offered.values()), answered.size, revised.sum(), changed.sum()),
        "per_annotator": per_annotator,
        "annotators": int(ids.size),
    }


def disagreement_rates(*, rows: JudgmentRows | None = None) -> dict:
    """Model-human disagreement among initial judgments with a model score.

    ``{"threshold", "overall": {"scored", "disagreements", "rate"}, "by_day": [{"day":
    "YYYY-MM-DD" (UTC), "judgments" (initial, all), "scored", "disagreements", "rate"}],
    "by_version": [{"model_version_id", "name", "scored", "disagreements", "rate"}]}``
    (days ascending, versions by id).
    """
    from modelloop.models import ModelVersion  # modelloop reads annotation, not the reverse

    rows = rows if rows is not None else load_rows()
    initial = ~rows.reconfirmed
    scored = initial & rows.scored
    disagree = initial & rows.disagrees

    def grouped(keys: np.ndarray):
        values, inverse = np.unique(keys[initial], return_inverse=True)
        count = lambda mask: np.bincount(inverse, weights=mask[initial], minlength=values.size).astype(np.int64)  # noqa: E731
        return values, count(initial), count(scored), count(disagree)

    days, n_day, scored_day, disagree_day = grouped(rows.day)
    by_day = [
        {
            "day": f"{d // 10000:04d}-{d // 100 % 100:02d}-{d % 100:02d}",
            "judgments": int(n_day[i]),
            "scored": int(scored_day[i]),
            "disagreements": int(disagree_day[i]),
            "rate": _share(disagree_day[i], scored_day[i]),
        }
        for i, d in enumerate(days.tolist())
    ]
    versions, _, scored_v, disagree_v = grouped(rows.version)
    names = dict(ModelVersion.objects.filter(pk__in=versions.tolist()).values_list("pk", "name"))
    by_version = [
        {
            "model_version_id": int(v),
            "name": names.get(int(v), "(unknown)"),
            "scored": int(scored_v[i]),
            "disagreements": int(disagree_v[i]),
            "rate": _share(disagree_v[i], scored_v[i]),
        }
        for i, v in enumerate(versions.tolist())
        if scored_v[i]
    ]
    return {
        "threshold": rows.threshold,
        "overall": {
            "scored": int(scored.sum()),
            "disagreements": int(disagree.sum()),
            "rate": _share(disagree.sum(), scored.sum()),
        },
        "by_day": by_day,
        "by_version": by_version,
    }


def collection_progress(*, rows: JudgmentRows | None = None) -> dict:
    """Data collection against its targets (module docstring, "Progress")."""
    rows = rows if rows is not None else load_rows()
    target = settings.MORALE_JUDGMENTS_PER_SCENARIO
    counted = rows.scenario_open & ~rows.scenario_canary
    full = counted & (rows.scenario_count >= target)
    contexts, inverse = np.unique(rows.scenario_context[counted], return_inverse=True)
    open_left = np.bincount(inverse, weights=~full[counted], minlength=contexts.size)
    towards = int(np.minimum(rows.scenario_count[counted], target).sum())
    slots = int(counted.sum()) * target
    canary_rows = rows.scenario_canary[rows.scenario_index(rows.scenario)]
    statuses = dict(Annotator.objects.order_by().values_list("status").annotate(n=Count("id")))
    return {
        "judgments_per_scenario": target,
        "scenarios": {"total": int(counted.sum()), "done": int(full.sum()), "share": _share(full.sum(), counted.sum())},
        "contexts": {
            "total": int(contexts.size),
            "done": int((open_left == 0).sum()),
            "share": _share((open_left == 0).sum(), contexts.size),
        },
        "judgments": {
            "target": slots,
            "towards_target": towards,
            "share": _share(towards, slots),
            "initial": int((~rows.reconfirmed & ~canary_rows).sum()),
            "reconfirmed": int(rows.reconfirmed.sum()),
            "canary": int(canary_rows.sum()),
        },
        "annotators": {s: statuses.get(s, 0) for s in Annotator.Status.values},
    }


MODEL_METRIC_KEYS = ("ndcg@5", "mrr", "kendall_tau_b", "unsafe_rate_pooled", "auc_safety_pooled", "ece")


def model_metrics() -> dict:
    """Test metrics of each model version, oldest first (``ModelVersion.metrics["test"]``,
    else the test metrics of the training run that produced it).

    ``{"keys": [...], "versions": [{"id", "name", "is_current", "created_at", "metrics":
    {key: value or None}, "training_run_id"}]}``. Versions without any metric are listed
    with all values None (e.g. the zero-shot baseline).
    """
    from training.models import TrainingRun  # training depends on annotation, not the reverse

    run_metrics: dict[int, tuple[int, dict]] = {}
    for run_id, version_id, metrics in (
        TrainingRun.objects.filter(model_version__isnull=False).order_by("id").values_list("id", "model_version_id", "metrics")
    ):
        run_metrics[version_id] = (run_id, metrics or {})
    from modelloop.models import ModelVersion

    versions = []
    for pk, name, is_current, created_at, metrics in (
        ModelVersion.objects.order_by("created_at", "id").values_list("pk", "name", "is_current", "created_at", "metrics")
    ):
        test = (metrics or {}).get("test") if isinstance(metrics, dict) else None
        run_id, run = run_metrics.get(pk, (None, {}))
        if not isinstance(test, dict) or not test:
            test = run.get("test") if isinstance(run.get("test"), dict) else {}
        values = {}
        for key in MODEL_METRIC_KEYS:
            raw = test.get(key)
            if raw is None and key == "unsafe_rate_pooled":
                raw = test.get("unsafe_rate")
            values[key] = _num(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
        versions.append(
            {
                "id": pk,
                "name": name,
                "is_current": is_current,
                "created_at": created_at.isoformat(),
                "metrics": values,
                "training_run_id": run_id,
            }
        )
    return {"keys": list(MODEL_METRIC_KEYS), "versions": versions}


def annotator_quality_summary() -> dict:
    """The stored quality flags (``annotation.quality.quality_refresh``), summarised.

    ``{"annotators", "checked", "last_checked_at", "by_status", "flag_counts": {code: n},
    "flagged": n with any flag, "canary_rates": [pass rate of each annotator with enough
    canaries], "canary_histogram": [{"low", "high", "n"}]}``.
    """
    min_checks = settings.MORALE_CANARY_MIN_CHECKS
    flag_counts: dict[str, int] = {}
    by_status: dict[str, int] = {s: 0 for s in Annotator.Status.values}
    rates = []
    flagged = checked = 0
    last = None
    for status, quality, checked_at in Annotator.objects.order_by().values_list("status", "quality", "quality_checked_at"):
        by_status[status] = by_status.get(status, 0) + 1
        if checked_at is not None:
            checked += 1
            last = checked_at if last is None or checked_at > last else last
        quality = quality if isinstance(quality, dict) else {}
        flags = quality.get("flags") or []
        if flags:
            flagged += 1
        for flag in flags:
            code = flag.get("code", "?") if isinstance(flag, dict) else str(flag)
            flag_counts[code] = flag_counts.get(code, 0) + 1
        stats = quality.get("stats") or {}
        rate = stats.get("canary_pass_rate")
        if isinstance(rate, (int, float)) and (stats.get("canary_checks") or 0) >= min_checks:
            rates.append(float(rate))
    edges = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 1.0]
    histogram = []
    for i, (low, high) in enumerate(zip(edges, edges[1:])):
        last_bin = i == len(edges) - 2
        n = sum(1 for r in rates if low <= r < high or (last_bin and r == high))
        histogram.append({"low": low, "high": high, "n": n})
    return {
        "annotators": sum(by_status.values()),
        "checked": checked,
        "last_checked_at": last.isoformat() if last else None,
        "by_status": by_status,
        "flag_counts": dict(sorted(flag_counts.items())),
        "flagged": flagged,
        "canary_rates": sorted(rates),
        "canary_histogram": histogram,
    }


# --- everything at once -----------------------------------------------------------------------
def dashboard_bundle(*, use_cache: bool = True) -> dict:
    """Every figure of the researchers' dashboard, from one snapshot (``load_rows``).

    Cached for ``MORALE_DASHBOARD_CACHE_SECONDS`` (0: never cached); ``use_cache=False``
    recomputes and refreshes the cache.
    """
    ttl = settings.MORALE_DASHBOARD_CACHE_SECONDS
    if use_cache and ttl > 0:
        cached = cache.get(DASHBOARD_CACHE_KEY)
        if cached is not None:
            return cached
    rows = load_rows()
    table = judgment_table(rows=rows)
    dispersion = item_dispersion(table)
    bundle = {
        "computed_at": timezone.now().isoformat(),
        "source": table.source,
        "include_screened": table.include_screened,
        "table": {"judgments": table.n_judgments, "scenarios": table.n_units},
        "alpha": krippendorff_alphas(table),
        "modality_agreement": modality_agreement(table),
        "ratings": rating_distribution(table),
        "shifts": judgment_shifts(table),
        "high_variance": {k: v for k, v in dispersion.items() if not k.startswith("flagged_")}
        | {"flagged_ids": dispersion["flagged_ids"][:50]},
        "revisions": revision_rates(rows=rows, per_annotator_limit=50),
        "disagreement": disagreement_rates(rows=rows),
        "progress": collection_progress(rows=rows),
        "models": model_metrics(),
        "quality": annotator_quality_summary(),
    }
    if ttl > 0:
        cache.set(DASHBOARD_CACHE_KEY, bundle, ttl)
    return bundle
