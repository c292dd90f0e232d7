"""Quality control of annotators (paper, section 3.2): per-annotator figures and flags,
``quality_refresh`` (celery beat) with its automatic pause, and the reads of the stored flags.

Flags only suggest; the status changes themselves are ``annotation.services.screening``;
the high-variance items are ``items.flagged_items``. Every figure and flag is defined in
docs/quality-control.md.
"""

from __future__ import annotations

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from ..models import Annotator, AnnotatorScreening, Judgment, Scenario
from ..services.screening import annotator_pause
from .numbers import json_number, ratio

VARIANCE_Z_MIN_ANNOTATORS = 3  # a robust z over fewer annotators says nothing
CORRELATION_MIN_ITEMS = 3  # below this no correlation is reported at all
_SCREENED = Annotator.Status.SCREENED_OUT.value


# --- per-annotator figures ----------------------------------------------------------------------
def annotator_stats() -> dict[int, dict]:
    """Figures behind the quality flags, per annotator id (docs/quality-control.md).

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
                "mean_score": json_number(mean[i]),
                "variance": json_number(variance[i]),
                "variance_z": json_number(z[i]),
                "distinct_scores": int(distinct[i]),
                "timed": int(timed[i]),
                "too_fast": int(fast[i]),
                "too_fast_share": ratio(fast[i], timed[i]),
                "pages": int(pages[i]),
                "straight_pages": int(straight[i]),
                "straight_share": ratio(straight[i], pages[i]),
                "correlation": json_number(corr[i]),
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
                "canary_pass_rate": ratio(passed, checks),
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


# --- reads of the stored flags (the quality page, the dashboard) ---------------------------------------
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


def annotator_quality_summary() -> dict:
    """The stored quality flags (``quality_refresh``), summarised.

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
