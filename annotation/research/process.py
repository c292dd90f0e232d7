"""Figures about the collection process, over every judgment row (not only the dataset's):
revision rate after grounding checks, model-human disagreement rate, progress against
the targets. Definitions: docs/research-figures.md."""

from __future__ import annotations

import numpy as np
from django.conf import settings
from django.db.models import Count

from modelloop.models import ModelVersion

from ..models import Annotator
from ..dataset.selection import pair_key as _pair_key
from ..dataset.table import JudgmentRows, load_rows
from .numbers import ratio


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
            "rate": ratio(revised_n, answered_n),
            "modality_rate": ratio(changed_n, answered_n),
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
            "rate": ratio(disagree_day[i], scored_day[i]),
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
            "rate": ratio(disagree_v[i], scored_v[i]),
        }
        for i, v in enumerate(versions.tolist())
        if scored_v[i]
    ]
    return {
        "threshold": rows.threshold,
        "overall": {
            "scored": int(scored.sum()),
            "disagreements": int(disagree.sum()),
            "rate": ratio(disagree.sum(), scored.sum()),
        },
        "by_day": by_day,
        "by_version": by_version,
    }


def collection_progress(*, rows: JudgmentRows | None = None) -> dict:
    """Data collection against its targets (docs/research-figures.md, "Progress")."""
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
        "scenarios": {"total": int(counted.sum()), "done": int(full.sum()), "share": ratio(full.sum(), counted.sum())},
        "contexts": {
            "total": int(contexts.size),
            "done": int((open_left == 0).sum()),
            "share": ratio((open_left == 0).sum(), contexts.size),
        },
        "judgments": {
            "target": slots,
            "towards_target": towards,
            "share": ratio(towards, slots),
            "initial": int((~rows.reconfirmed & ~canary_rows).sum()),
            "reconfirmed": int(rows.reconfirmed.sum()),
            "canary": int(canary_rows.sum()),
        },
        "annotators": {s: statuses.get(s, 0) for s in Annotator.Status.values},
    }
