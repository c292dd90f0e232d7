"""Quality control of annotators and items (paper, section 3.2: canary checks > 98% pass,
per-annotator variance screening; section 3.3: items with sd > 1.2 removed).

Flags only suggest: ``quality_refresh`` (celery beat, every
``MORALE_QUALITY_INTERVAL_SECONDS``) stores each annotator's flags and the figures behind
them in ``Annotator.quality``; a researcher confirms a screening (``annotator_screen_out``)
or lifts it (``annotator_reinstate``). The one automatic decision is the pause of an
annotator who fails too many canaries. Every status change writes an
``AnnotatorScreening`` row (who, when, why) in the same transaction. A paused or
screened-out annotator gets no new page (``services.assignment_get_or_create`` and the
annotator views refuse inactive annotators), and the page they had open expires at once,
so its scenarios go back to the pool instead of waiting out the page's TTL. A
screened-out annotator's judgments stay stored; exports and the dataset figures leave
them out.

Per-annotator figures (``annotator_stats``; four queries for all annotators together,
then numpy):

- **canaries**: initial answers to canary scenarios and how many fell inside the
  canary's range (the answer after a grounding check is not counted: it was given after
  seeing the model's score). ``canary_pass_rate`` below ``MORALE_CANARY_WARN_RATE``
  flags the annotator once they answered ``MORALE_CANARY_MIN_CHECKS``; below
  ``MORALE_CANARY_PAUSE_RATE`` they are paused. For the pause only the canaries answered
  since the last reinstatement count, so lifting a pause is not undone by the next run.

The rest is over the annotator's initial judgments of non-canary scenarios and runs once
they have ``MORALE_SCREEN_MIN_JUDGMENTS`` of them:

- **too fast**: share of judgments with ``seconds_spent`` (the page's time divided by its
  scenarios) below ``MORALE_TOO_FAST_SECONDS``, over the timed ones; flagged above
  ``MORALE_TOO_FAST_SHARE``;
- **constant**: one score for everything;
- **straight-lining**: the same score on every scenario of a page, on more than
  ``MORALE_SCREEN_STRAIGHT_LINE_SHARE`` of the pages with at least two scenarios;
- **low correlation**: Pearson correlation between the annotator's scores and the
  leave-one-out item means (the mean of the *other* raters of the same scenario) over
  the scenarios with at least two other raters, flagged below
  ``MORALE_SCREEN_MIN_CORRELATION`` once ``MORALE_SCREEN_MIN_JUDGMENTS`` such scenarios
  exist. Screened-out annotators never count as "other raters";
- **outlying variance**: the variance (ddof=1) of the annotator's scores, as a robust
  z-score over the annotators who qualify (``(v - median) / (1.4826 * MAD)``; when the
  MAD is 0, the mean absolute deviation x 1.2533 instead; at least 3 annotators);
  ``|z|`` above ``MORALE_SCREEN_VARIANCE_Z`` is flagged (too high: random answers; too
  low: little use of the scale).
"""

from __future__ import annotations

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from . import analysis
from .models import Annotator, AnnotatorScreening, Assignment, Judgment, Scenario

VARIANCE_Z_MIN_ANNOTATORS = 3  # a robust z over fewer annotators says nothing
CORRELATION_MIN_ITEMS = 3  # below this no correlation is reported at all
_SCREENED = Annotator.Status.SCREENED_OUT.value


def _rate(part, whole):
    return float(part) / float(whole) if whole else None


def _float(x):
    return None if x is None or not np.isfinite(x) else float(x)


# --- per-annotator figures ----------------------------------------------------------------------
def annotator_stats() -> dict[int, dict]:
    """Figures behind the quality flags, per annotator id (module docstring).

    Every annotator has an entry; figures that do not apply yet are None.
    """
    annotators = list(Annotator.objects.order_by("pk").values_list("pk", "status"))
    if not annotators:
        return {}
    ids = np.fromiter((a for a, _ in annotators), dtype=np.int64, count=len(annotators))
    screened = np.fromiter((s == _SCREENED for _, s in annotators), dtype=bool, count=len(annotators))

    # No join on the big query: canary scenarios are few, their judgments go by index.
    canary_scenarios = Scenario.objects.filter(is_canary=True).values("pk")
    rows = list(
        Judgment.objects.filter(phase=Judgment.Phase.INITIAL)
        .exclude(scenario__in=canary_scenarios)
        .order_by()
        .values_list("annotator_id", "scenario_id", "assignment_id", "score", "seconds_spent")
    )
    canaries = list(
        Judgment.objects.filter(
            phase=Judgment.Phase.INITIAL, scenario__in=canary_scenarios, canary_passed__isnull=False
        )
        .order_by()
        .values_list("annotator_id", "canary_passed", "created_at")
    )
    reinstated = dict(
        AnnotatorScreening.objects.filter(action=AnnotatorScreening.Action.REINSTATE)
        .order_by()
        .values_list("annotator_id")
        .annotate(at=Max("created_at"))
    )

    stats = {int(a): {} for a in ids}
    _judgment_figures(stats, ids, screened, rows)
    _canary_figures(stats, canaries, reinstated)
    return stats


def _judgment_figures(stats: dict, ids: np.ndarray, screened: np.ndarray, rows: list) -> None:
    n_ann = ids.size
    min_judgments = settings.MORALE_SCREEN_MIN_JUDGMENTS
    if rows:
        annot, scen, page, score, secs = zip(*rows)
        count = len(rows)
        a = np.searchsorted(ids, np.fromiter(annot, dtype=np.int64, count=count))
        scen = np.fromiter(scen, dtype=np.int64, count=count)
        page = np.fromiter(page, dtype=np.int64, count=count)
        x = np.fromiter(score, dtype=float, count=count)
        secs = np.fromiter((np.nan if s is None else s for s in secs), dtype=float, count=count)
    else:
        a = scen = page = np.zeros(0, dtype=np.int64)
        x = secs = np.zeros(0, dtype=float)

    n = np.bincount(a, minlength=n_ann)
    total = np.bincount(a, weights=x, minlength=n_ann)
    mean = np.divide(total, n, out=np.full(n_ann, np.nan), where=n > 0)
    dev = x - mean[a]
    ss = np.bincount(a, weights=dev * dev, minlength=n_ann)
    variance = np.divide(ss, n - 1, out=np.full(n_ann, np.nan), where=n > 1)
    distinct = np.bincount(np.unique(a * 5 + (x.astype(np.int64) - 1)) // 5, minlength=n_ann)

    timed_mask = ~np.isnan(secs)
    timed = np.bincount(a[timed_mask], minlength=n_ann)
    fast = np.bincount(a[timed_mask & (secs < settings.MORALE_TOO_FAST_SECONDS)], minlength=n_ann)

    # Pages: the judgments of one assignment (always one annotator's).
    order = np.argsort(page, kind="stable")
    page_sorted, x_sorted = page[order], x[order]
    if page_sorted.size:
        _, starts, sizes = np.unique(page_sorted, return_index=True, return_counts=True)
        low = np.minimum.reduceat(x_sorted, starts)
        high = np.maximum.reduceat(x_sorted, starts)
        page_ann = a[order][starts]
        multi = sizes >= 2
        pages = np.bincount(page_ann[multi], minlength=n_ann)
        straight = np.bincount(page_ann[multi & (low == high)], minlength=n_ann)
    else:
        pages = straight = np.zeros(n_ann, dtype=np.int64)

    # Leave-one-out item means over the other (not screened-out) raters.
    reference = ~screened[a]
    if scen.size:
        items, item_index = np.unique(scen, return_inverse=True)
        item_n = np.bincount(item_index, weights=reference.astype(float), minlength=items.size)
        item_sum = np.bincount(item_index, weights=x * reference, minlength=items.size)
        others_n = item_n[item_index] - reference
        others_sum = item_sum[item_index] - x * reference
    else:
        others_n = others_sum = np.zeros(0, dtype=float)
    use = others_n >= 2
    corr, corr_items = _grouped_pearson(a[use], x[use], others_sum[use] / others_n[use], n_ann)

    # Robust z of the variance over the annotators who qualify.
    eligible = (n >= max(min_judgments, 2)) & ~np.isnan(variance)
    z = np.full(n_ann, np.nan)
    if eligible.sum() >= VARIANCE_Z_MIN_ANNOTATORS:
        v = variance[eligible]
        median = np.median(v)
        scale = 1.4826 * np.median(np.abs(v - median))
        if scale == 0:
            scale = 1.2533 * np.mean(np.abs(v - median))
        if scale > 0:
            z[eligible] = (v - median) / scale

    for i, pk in enumerate(ids):
        stats[int(pk)].update(
            {
                "judgments": int(n[i]),
                "mean_score": _float(mean[i]),
                "variance": _float(variance[i]),
                "variance_z": _float(z[i]),
                "distinct_scores": int(distinct[i]),
                "timed": int(timed[i]),
                "too_fast": int(fast[i]),
                "too_fast_share": _rate(fast[i], timed[i]),
                "pages": int(pages[i]),
                "straight_pages": int(straight[i]),
                "straight_share": _rate(straight[i], pages[i]),
                "correlation": _float(corr[i]),
                "correlation_items": int(corr_items[i]),
            }
        )


def _grouped_pearson(group: np.ndarray, x: np.ndarray, y: np.ndarray, n_groups: int):
    """Pearson r of (x, y) within each group (centred sums); NaN where undefined."""
    k = np.bincount(group, minlength=n_groups)
    mx = np.divide(np.bincount(group, weights=x, minlength=n_groups), k, out=np.zeros(n_groups), where=k > 0)
    my = np.divide(np.bincount(group, weights=y, minlength=n_groups), k, out=np.zeros(n_groups), where=k > 0)
    dx, dy = x - mx[group], y - my[group]
    sxx = np.bincount(group, weights=dx * dx, minlength=n_groups)
    syy = np.bincount(group, weights=dy * dy, minlength=n_groups)
    sxy = np.bincount(group, weights=dx * dy, minlength=n_groups)
    tiny = 1e-12
    ok = (k >= CORRELATION_MIN_ITEMS) & (sxx > tiny) & (syy > tiny)
    r = np.full(n_groups, np.nan)
    r[ok] = np.clip(sxy[ok] / np.sqrt(sxx[ok] * syy[ok]), -1.0, 1.0)
    return r, k


def _canary_figures(stats: dict, canaries: list, reinstated: dict) -> None:
    totals: dict[int, list[int]] = {}
    for annotator_id, passed, created_at in canaries:
        entry = totals.setdefault(annotator_id, [0, 0, 0, 0])  # checks, passed, since-reinstated checks, passed
        entry[0] += 1
        entry[1] += bool(passed)
        since = reinstated.get(annotator_id)
        if since is None or created_at > since:
            entry[2] += 1
            entry[3] += bool(passed)
    for pk, entry in stats.items():
        checks, passed, recent, recent_passed = totals.get(pk, [0, 0, 0, 0])
        since = reinstated.get(pk)
        entry.update(
            {
                "canary_checks": checks,
                "canary_passed": passed,
                "canary_pass_rate": _rate(passed, checks),
                "reinstated_at": since.isoformat() if since else None,
                "canary_checks_since_reinstated": recent,
                "canary_passed_since_reinstated": recent_passed,
            }
        )


# --- flags ---------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def annotator_flags(stats: dict) -> list[dict]:
    """The quality flags ({"code", "message"}) that one annotator's figures raise."""
    flags = []
    min_checks = settings.MORALE_CANARY_MIN_CHECKS
    rate = stats.get("canary_pass_rate")
    if rate is not None and stats["canary_checks"] >= min_checks and rate < settings.MORALE_CANARY_WARN_RATE:
        flags.append(
            {
                "code": "canary_pass_rate",
                "message": f"Canary pass rate {_pct(rate)} ({stats['canary_passed']} of {stats['canary_checks']}) "
                f"is below {_pct(settings.MORALE_CANARY_WARN_RATE)}.",
            }
        )
    if stats.get("judgments", 0) < settings.MORALE_SCREEN_MIN_JUDGMENTS:
        return flags
    share = stats.get("too_fast_share")
    if share is not None and stats["timed"] >= settings.MORALE_SCREEN_MIN_JUDGMENTS and share > settings.MORALE_TOO_FAST_SHARE:
        flags.append(
            {
                "code": "too_fast",
                "message": f"{_pct(share)} of judgments ({stats['too_fast']} of {stats['timed']}) took under "
                f"{settings.MORALE_TOO_FAST_SECONDS:g} s (more than {_pct(settings.MORALE_TOO_FAST_SHARE)}).",
            }
        )
    if stats["distinct_scores"] == 1:
        flags.append(
            {
                "code": "constant",
                "message": f"The same score ({stats['mean_score']:.0f}) on all {stats['judgments']} judgments.",
            }
        )
    else:
        straight = stats.get("straight_share")
        if straight is not None and straight > settings.MORALE_SCREEN_STRAIGHT_LINE_SHARE:
            flags.append(
                {
                    "code": "straight_line",
                    "message": f"The same score on every scenario of {stats['straight_pages']} of "
                    f"{stats['pages']} pages ({_pct(straight)}).",
                }
            )
    r = stats.get("correlation")
    if r is not None and stats["correlation_items"] >= settings.MORALE_SCREEN_MIN_JUDGMENTS and r < settings.MORALE_SCREEN_MIN_CORRELATION:
        flags.append(
            {
                "code": "low_correlation",
                "message": f"Correlation with the other raters' item means r = {r:.2f} over "
                f"{stats['correlation_items']} scenarios (below {settings.MORALE_SCREEN_MIN_CORRELATION:g}).",
            }
        )
    z = stats.get("variance_z")
    if z is not None and abs(z) > settings.MORALE_SCREEN_VARIANCE_Z:
        flags.append(
            {
                "code": "variance_outlier",
                "message": f"Score variance {stats['variance']:.2f} is unusually {'high' if z > 0 else 'low'} "
                f"(robust z = {z:.2f}, limit {settings.MORALE_SCREEN_VARIANCE_Z:g}).",
            }
        )
    return flags


def _should_pause(stats: dict) -> bool:
    checks = stats["canary_checks_since_reinstated"]
    return (
        checks >= settings.MORALE_CANARY_MIN_CHECKS
        and stats["canary_passed_since_reinstated"] / checks < settings.MORALE_CANARY_PAUSE_RATE
    )


@transaction.atomic
def _auto_pause(annotator_id: int, *, stats: dict, since) -> bool:
    """Pause one annotator for failed canaries, unless a researcher acted since ``since``."""
    annotator = Annotator.objects.select_for_update().get(pk=annotator_id)
    if annotator.status != Annotator.Status.ACTIVE:
        return False
    if AnnotatorScreening.objects.filter(annotator=annotator, created_at__gte=since).exists():
        return False
    checks, passed = stats["canary_checks_since_reinstated"], stats["canary_passed_since_reinstated"]
    reasons = [
        {
            "code": "canary_pause",
            "message": f"Paused automatically: canary pass rate {_pct(passed / checks)} ({passed} of {checks}) "
            f"is below {_pct(settings.MORALE_CANARY_PAUSE_RATE)}.",
        }
    ]
    return annotator_pause(annotator, by=None, reasons=reasons) is not None


def quality_refresh(*, now=None) -> dict:
    """Recompute every annotator's flags, store them, and pause failing canary-takers.

    Writes ``quality = {"flags": [...], "stats": {...}}`` and ``quality_checked_at`` for
    every annotator (status untouched, except the automatic pause). Idempotent. Returns
    ``{"annotators", "flagged", "paused": [annotator ids], "checked_at"}``.
    """
    now = now or timezone.now()
    stats = annotator_stats()
    updates, paused, flagged = [], [], 0
    for pk, figures in stats.items():
        flags = annotator_flags(figures)
        flagged += bool(flags)
        updates.append(Annotator(pk=pk, quality={"flags": flags, "stats": figures}, quality_checked_at=now))
    Annotator.objects.bulk_update(updates, ["quality", "quality_checked_at"], batch_size=200)
    for pk, figures in stats.items():
        if _should_pause(figures) and _auto_pause(pk, stats=figures, since=now):
            paused.append(pk)
    return {"annotators": len(stats), "flagged": flagged, "paused": paused, "checked_at": now.isoformat()}


# --- status changes (researchers' decisions and the automatic pause) ------------------------------
def _reasons_list(reasons) -> list[dict]:
    """Reasons as [{"code", "message"}]: quality flags as they are, free text as a "note"."""
    if reasons is None:
        return []
    if isinstance(reasons, (str, dict)):
        reasons = [reasons]
    out = []
    for reason in reasons:
        if isinstance(reason, dict):
            out.append({"code": str(reason.get("code") or "note"), "message": str(reason.get("message") or "")})
        elif str(reason).strip():
            out.append({"code": "note", "message": str(reason).strip()})
    return out


def _status_change(annotator: Annotator, *, action: str, to: str, allowed_from: tuple, by, reasons: list[dict]):
    with transaction.atomic():
        locked = Annotator.objects.select_for_update().get(pk=annotator.pk)
        if locked.status not in allowed_from:
            annotator.status, annotator.status_reason = locked.status, locked.status_reason
            return None
        locked.status = to
        locked.status_reason = "; ".join(r["message"] for r in reasons if r["message"])
        locked.full_clean()
        locked.save(update_fields=["status", "status_reason"])
        screening = AnnotatorScreening(annotator=locked, action=action, reasons=reasons, decided_by=by)
        screening.full_clean()
        screening.save()
        if to != Annotator.Status.ACTIVE:
            # Their open page gives its scenarios back to the pool at once, not after its TTL.
            Assignment.objects.filter(annotator=locked, status=Assignment.Status.ACTIVE).update(
                status=Assignment.Status.EXPIRED
            )
    annotator.status, annotator.status_reason = locked.status, locked.status_reason
    return screening


def annotator_screen_out(annotator: Annotator, *, by, reasons=None) -> AnnotatorScreening | None:
    """A researcher confirms a screening: the annotator gets no more work, and exports and
    dataset figures leave their judgments out (the rows stay stored).

    ``by``: the deciding user (None: automatic). ``reasons``: quality flags, text, or a
    list of either; default the annotator's current quality flags. Returns the new
    ``AnnotatorScreening`` row, or None when the annotator was screened out already.
    """
    if reasons is None:
        reasons = (annotator.quality or {}).get("flags") or []
    return _status_change(
        annotator,
        action=AnnotatorScreening.Action.SCREEN_OUT,
        to=Annotator.Status.SCREENED_OUT,
        allowed_from=(Annotator.Status.ACTIVE, Annotator.Status.PAUSED),
        by=by,
        reasons=_reasons_list(reasons),
    )


def annotator_pause(annotator: Annotator, *, by=None, reasons=None) -> AnnotatorScreening | None:
    """Stop giving an active annotator work until someone reinstates them; their judgments
    stay in exports. None when they were not active (paused or screened out already)."""
    return _status_change(
        annotator,
        action=AnnotatorScreening.Action.PAUSE,
        to=Annotator.Status.PAUSED,
        allowed_from=(Annotator.Status.ACTIVE,),
        by=by,
        reasons=_reasons_list(reasons),
    )


def annotator_reinstate(annotator: Annotator, *, by, note: str = "") -> AnnotatorScreening | None:
    """Lift a pause or a screening: active again, judgments back in exports.

    None when the annotator was active already. Canaries failed before this moment no
    longer count towards the automatic pause.
    """
    return _status_change(
        annotator,
        action=AnnotatorScreening.Action.REINSTATE,
        to=Annotator.Status.ACTIVE,
        allowed_from=(Annotator.Status.PAUSED, Annotator.Status.SCREENED_OUT),
        by=by,
        reasons=_reasons_list(note),
    )


# --- selectors for the researchers' pages -----------------------------------------------------------
def flagged_items(*, max_sd: float | None = None, limit: int | None = 100, table=None) -> dict:
    """Scenarios whose score sd (ddof=1, over the judgments an export uses) is above
    ``max_sd`` (default ``MORALE_EXPORT_MAX_SD``): the items the export drops.

    ``{"max_sd", "scenarios", "with_sd", "flagged", "share", "items": [{"scenario_id",
    "context_id", "text", "n", "mean", "sd", "scores"}]}``, highest sd first, at most
    ``limit`` items (None: all); ``share`` is flagged / scenarios with a judgment (the
    paper removes about 4.8%).
    """
    table = table if table is not None else analysis.judgment_table()
    dispersion = analysis.item_dispersion(table, max_sd=max_sd)
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


def flagged_annotators() -> list[dict]:
    """Annotators with a quality flag or not active, for the researchers' quality page:
    ``[{"id", "username", "status", "status_display", "status_reason", "flags", "stats",
    "checked_at"}]``,
    most flags first."""
    rows = []
    for pk, username, status, reason, quality, checked_at in Annotator.objects.order_by("pk").values_list(
        "pk", "user__username", "status", "status_reason", "quality", "quality_checked_at"
    ):
        quality = quality if isinstance(quality, dict) else {}
        flags = quality.get("flags") or []
        if flags or status != Annotator.Status.ACTIVE:
            rows.append(
                {
                    "id": pk,
                    "username": username,
                    "status": status,
                    "status_display": Annotator.Status(status).label,
                    "status_reason": reason,
                    "flags": flags,
                    "stats": quality.get("stats") or {},
                    "checked_at": checked_at,
                }
            )
    rows.sort(key=lambda r: (-len(r["flags"]), r["id"]))
    return rows
