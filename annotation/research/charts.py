"""The researchers' pages: the dashboard (/research/) and the quality list (/research/quality/).

Staff or members of the "researcher" group only: anonymous visitors go to the login page,
anyone else gets 403. Thin views: one selector call, then the figures are laid out as
inline SVG here (no JavaScript, no chart library, no CDN). Every chart carries a title,
a description and its numbers as a table in a <details> element, for screen readers
and for copying.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from . import analysis, quality
from .roles import is_researcher

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
MODALITY_LABELS = {"text": "text", "image": "image", "both": "both"}


def researcher_required(view):
    """Logged in (else the login page), and a researcher (``roles.is_researcher``: the same
    rule as the admin and the API; else 403)."""

    @login_required
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not is_researcher(request.user):
            raise PermissionDenied("Researchers only.")
        return view(request, *args, **kwargs)

    return wrapper


# --- inline SVG charts --------------------------------------------------------------------------
@dataclass
class Chart:
    """One figure: SVG shapes (coordinates computed here) and its data table."""

    id: str
    title: str
    description: str
    width: int = 640
    height: int = 260
    bars: list = field(default_factory=list)  # {x, y, w, h, color, label}
    lines: list = field(default_factory=list)  # {points, color, label, dots: [{x, y, label}]}
    axes: list = field(default_factory=list)  # {x1, y1, x2, y2}
    ticks: list = field(default_factory=list)  # {x, y, text, anchor}
    legend: list = field(default_factory=list)  # {name, color}
    headers: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    empty: bool = False
    note: str = ""


LEFT, RIGHT, TOP, BOTTOM = 52, 12, 14, 46


def _fmt(value, kind: str = "number") -> str:
    if value is None:
        return "–"
    if kind == "percent":
        return f"{100 * value:.1f}%"
    if kind == "int":
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def nice_ceiling(value: float, steps: int = 4) -> float:
    """The smallest "round" axis top >= value: its quarters are 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 x 10^k."""
    if value <= 0:
        return 1.0
    raw = value / steps
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if factor * magnitude >= raw - 1e-12:
            return factor * magnitude * steps
    return 10 * magnitude * steps


def _axis_top(largest: float, y_min: float, kind: str) -> float:
    top = nice_ceiling(largest - y_min) + y_min
    if kind == "int":  # whole-number ticks
        top = 4 * math.ceil(max(top, 4) / 4)
    return top


def _y_axis(chart: Chart, y_min: float, y_max: float, kind: str, steps: int = 4) -> None:
    plot_h = chart.height - TOP - BOTTOM
    chart.axes.append({"x1": LEFT, "y1": TOP, "x2": LEFT, "y2": TOP + plot_h})
    chart.axes.append({"x1": LEFT, "y1": TOP + plot_h, "x2": chart.width - RIGHT, "y2": TOP + plot_h})
    for i in range(steps + 1):
        value = y_min + (y_max - y_min) * i / steps
        y = TOP + plot_h - plot_h * i / steps
        text = f"{100 * value:.0f}%" if kind == "percent" else (f"{value:,.0f}" if kind == "int" else f"{value:.2f}")
        chart.ticks.append({"x": LEFT - 6, "y": round(y + 4, 1), "text": text, "anchor": "end", "grid_y": round(y, 1)})


def _scale(value: float, y_min: float, y_max: float, plot_h: float) -> float:
    span = (y_max - y_min) or 1.0
    return plot_h * (min(max(value, y_min), y_max) - y_min) / span


def _short(text: str, n: int = 14) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def bar_chart(
    *, id: str, title: str, description: str, categories: list[str], series: list[tuple[str, list]],
    kind: str = "number", y_min: float = 0.0, y_max: float | None = None, headers: list[str] | None = None,
    tick_labels: list[str] | None = None,
) -> Chart:
    """Grouped vertical bars: one group per category, one bar per series (None: no bar).

    ``tick_labels``: shorter names under the axis (the table keeps ``categories``).
    """
    tick_labels = tick_labels or categories
    chart = Chart(id=id, title=title, description=description)
    values = [v for _, vs in series for v in vs if v is not None]
    chart.headers = headers or ["", *[name for name, _ in series]]
    chart.rows = [[c, *[_fmt(vs[i], kind) for _, vs in series]] for i, c in enumerate(categories)]
    if not categories or not values:
        chart.empty = True
        return chart
    top = y_max if y_max is not None else _axis_top(max(values), y_min, kind)
    _y_axis(chart, y_min, top, kind)
    plot_w = chart.width - LEFT - RIGHT
    plot_h = chart.height - TOP - BOTTOM
    group_w = plot_w / len(categories)
    bar_w = max(2.0, min(28.0, group_w * 0.8 / len(series)))
    for i, category in enumerate(categories):
        x0 = LEFT + group_w * i + (group_w - bar_w * len(series)) / 2
        for k, (name, vs) in enumerate(series):
            if vs[i] is None:
                continue
            h = _scale(vs[i], y_min, top, plot_h)
            chart.bars.append(
                {
                    "x": round(x0 + k * bar_w, 1),
                    "y": round(TOP + plot_h - h, 1),
                    "w": round(bar_w - 1, 1),
                    "h": round(max(h, 0.5), 1),
                    "color": PALETTE[k % len(PALETTE)],
                    "label": f"{category}, {name}: {_fmt(vs[i], kind)}",
                }
            )
        if i % max(1, math.ceil(len(categories) * 9 / plot_w)) == 0:  # ~9 px per character of a label
            chart.ticks.append(
                {"x": round(LEFT + group_w * (i + 0.5), 1), "y": TOP + plot_h + 16,
                 "text": _short(tick_labels[i], max(4, int(group_w // 7))), "anchor": "middle"}
            )
    if len(series) > 1:
        chart.legend = [{"name": name, "color": PALETTE[k % len(PALETTE)]} for k, (name, _) in enumerate(series)]
    return chart


def line_chart(
    *, id: str, title: str, description: str, x_labels: list[str], series: list[tuple[str, list]],
    kind: str = "number", y_min: float = 0.0, y_max: float | None = None, headers: list[str] | None = None,
    extra_columns: list[tuple[str, list]] | None = None, tick_labels: list[str] | None = None,
) -> Chart:
    """Lines over ordered x positions (days, versions); None values break a line.

    ``tick_labels``: shorter names under the axis (the table keeps ``x_labels``).
    """
    tick_labels = tick_labels or x_labels
    chart = Chart(id=id, title=title, description=description)
    extra_columns = extra_columns or []
    chart.headers = headers or ["", *[name for name, _ in series], *[name for name, _ in extra_columns]]
    chart.rows = [
        [x, *[_fmt(vs[i], kind) for _, vs in series], *[_fmt(vs[i], "int") for _, vs in extra_columns]]
        for i, x in enumerate(x_labels)
    ]
    values = [v for _, vs in series for v in vs if v is not None]
    if not x_labels or not values:
        chart.empty = True
        return chart
    top = y_max if y_max is not None else _axis_top(max(values), y_min, kind)
    _y_axis(chart, y_min, top, kind)
    plot_w = chart.width - LEFT - RIGHT
    plot_h = chart.height - TOP - BOTTOM
    n = len(x_labels)
    widest = max(len(t) for t in tick_labels)

    def x_at(i: int) -> float:
        return LEFT + (plot_w * (i + 0.5) / n)

    for k, (name, vs) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        segment, segments, dots = [], [], []
        for i, v in enumerate(vs):
            if v is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            point = (round(x_at(i), 1), round(TOP + plot_h - _scale(v, y_min, top, plot_h), 1))
            segment.append(point)
            dots.append({"x": point[0], "y": point[1], "label": f"{x_labels[i]}, {name}: {_fmt(v, kind)}"})
        if segment:
            segments.append(segment)
        for seg in segments:
            chart.lines.append({"points": " ".join(f"{x},{y}" for x, y in seg), "color": color})
        chart.lines.append({"points": "", "color": color, "dots": dots})
    step = max(1, math.ceil(n * (min(widest, 18) * 7 + 10) / plot_w))  # labels must not overlap
    for i, label in enumerate(tick_labels):
        if i % step == 0:
            chart.ticks.append({"x": round(x_at(i), 1), "y": TOP + plot_h + 16, "text": _short(label, 18), "anchor": "middle"})
    if len(series) > 1:
        chart.legend = [{"name": name, "color": PALETTE[k % len(PALETTE)]} for k, (name, _) in enumerate(series)]
    return chart


def progress_chart(*, id: str, title: str, description: str, rows: list[tuple[str, int, int]]) -> Chart:
    """Horizontal bars: done of target, per row."""
    chart = Chart(id=id, title=title, description=description, height=40 + 34 * len(rows))
    chart.headers = ["", "done", "target", "share"]
    chart.rows = [[label, _fmt(done, "int"), _fmt(target, "int"), _fmt(done / target if target else None, "percent")] for label, done, target in rows]
    label_w, plot_w = 150, chart.width - 150 - 70
    for i, (label, done, target) in enumerate(rows):
        y = 14 + 34 * i
        share = done / target if target else 0.0
        chart.bars.append({"x": label_w, "y": y, "w": plot_w, "h": 20, "color": "#e6e9ed", "label": f"{label}: target {target:,}"})
        chart.bars.append(
            {"x": label_w, "y": y, "w": round(plot_w * min(share, 1.0), 1), "h": 20, "color": PALETTE[2],
             "label": f"{label}: {done:,} of {target:,} ({_fmt(share, 'percent')})"}
        )
        chart.ticks.append({"x": label_w - 8, "y": y + 15, "text": label, "anchor": "end"})
        chart.ticks.append({"x": label_w + plot_w + 6, "y": y + 15, "text": _fmt(share if target else None, "percent"), "anchor": "start"})
    chart.empty = not rows
    return chart


# --- the dashboard ---------------------------------------------------------------------------------
def dashboard_charts(bundle: dict) -> list[Chart]:
    """Lay out the figures of ``analysis.dashboard_bundle`` as charts."""
    charts = []
    ratings = bundle["ratings"]
    modalities = list(analysis.MODALITIES)
    charts.append(
        bar_chart(
            id="ratings",
            title="Ratings by modality",
            description="Number of judgments giving each score (1-5), by the modality the annotator said drove "
            "the judgment (paper, fig. 5).",
            categories=[str(s) for s in analysis.SCORES],
            series=[(m, ratings["counts"][m]) for m in modalities],
            kind="int",
            headers=["score", *modalities],
        )
    )
    shifts = bundle["shifts"]
    charts.append(
        bar_chart(
            id="shifts",
            title="Judgment shifts against text-only labels, by modality",
            description="Scenarios whose mean human score is more acceptable, about the same, or less acceptable "
            "than their text-only label (mapped to the 1-5 scale), by majority modality (paper, table 2 and "
            "fig. 6); extreme = a shift of 3 points or more.",
            categories=modalities,
            series=[
                ("more acceptable", [shifts["by_modality"][m]["up"] for m in modalities]),
                ("neutral", [shifts["by_modality"][m]["neutral"] for m in modalities]),
                ("less acceptable", [shifts["by_modality"][m]["down"] for m in modalities]),
                ("extreme (>= 3)", [shifts["by_modality"][m]["extreme"] for m in modalities]),
            ],
            kind="int",
            headers=["modality", "more acceptable", "neutral", "less acceptable", "extreme (>= 3)"],
        )
    )
    mapping = ", ".join(f"{'+' if label == '1' else ''}{label} → {score:g}" for label, score in shifts["mapping"].items())
    charts[-1].description += f" Labels map to the scale as {mapping}; neutral = within {shifts['neutral_band']:g} point."
    labelled = [(label, m) for label in ("1", "0", "-1") for m in modalities]
    by_label = shifts["by_label"]
    charts.append(
        bar_chart(
            id="shifts-by-label",
            title="Directional shifts by text-only label and modality",
            description="The same shifts split by the original label: +1 (\"you should\"), 0, -1 (\"you should "
            "not\") (paper, fig. 6b).",
            categories=[f"{'+' if label == '1' else ''}{label} {m}" for label, m in labelled],
            series=[
                ("more acceptable", [by_label[label][m]["up"] for label, m in labelled]),
                ("neutral", [by_label[label][m]["neutral"] for label, m in labelled]),
                ("less acceptable", [by_label[label][m]["down"] for label, m in labelled]),
                ("extreme (>= 3)", [by_label[label][m]["extreme"] for label, m in labelled]),
            ],
            kind="int",
            headers=["label, modality", "more acceptable", "neutral", "less acceptable", "extreme (>= 3)"],
        )
    )
    alpha = bundle["alpha"]
    batches = [alpha["overall"] | {"label": "overall"}] + alpha["by_batch"]
    charts.append(
        bar_chart(
            id="alpha",
            title="Agreement (Krippendorff's alpha) overall and per context batch",
            description="Interval and ordinal alpha on the 1-5 scores and nominal alpha on the modality, overall "
            "and for each import batch of contexts (paper: 0.74 scores, 0.71 modality).",
            categories=[b["label"] for b in batches],
            tick_labels=["all", *[("none" if b["batch_id"] is None else f"#{b['batch_id']}") for b in batches[1:]]],
            series=[
                ("interval", [b["interval"] for b in batches]),
                ("ordinal", [b["ordinal"] for b in batches]),
                ("nominal (modality)", [b["nominal_modality"] for b in batches]),
            ],
            y_min=0.0,
            y_max=1.0,
            headers=["batch", "interval", "ordinal", "nominal (modality)"],
        )
    )
    charts[-1].rows = [row + [_fmt(b["units"], "int")] for row, b in zip(charts[-1].rows, batches)]
    charts[-1].headers.append("scenarios")
    agreement = bundle["modality_agreement"]
    charts.append(
        bar_chart(
            id="modality-agreement",
            title="Modality agreement by majority modality",
            description="Share of annotators naming the scenario's majority modality (paper: 82% text, 61% image).",
            categories=modalities,
            series=[("agreement", [agreement["by_modality"][m]["share"] for m in modalities])],
            kind="percent",
            y_max=1.0,
            headers=["majority modality", "agreement"],
        )
    )
    charts[-1].rows = [row + [_fmt(agreement["by_modality"][m]["units"], "int")] for row, m in zip(charts[-1].rows, modalities)]
    charts[-1].headers.append("scenarios")
    disagreement = bundle["disagreement"]
    days = disagreement["by_day"]
    charts.append(
        line_chart(
            id="disagreement-days",
            title="Model-human disagreement rate per day",
            description=f"Share of initial judgments at least {disagreement['threshold']:g} point(s) from the "
            "model's score, among those with a model score, per day (UTC).",
            x_labels=[d["day"] for d in days],
            tick_labels=[d["day"][5:] for d in days],
            series=[("disagreement rate", [d["rate"] for d in days])],
            kind="percent",
            y_max=1.0,
            headers=["day", "disagreement rate", "judgments", "with model score", "disagreements"],
            extra_columns=[
                ("judgments", [d["judgments"] for d in days]),
                ("with model score", [d["scored"] for d in days]),
                ("disagreements", [d["disagreements"] for d in days]),
            ],
        )
    )
    versions = disagreement["by_version"]
    charts.append(
        bar_chart(
            id="disagreement-versions",
            title="Disagreement rate per model version",
            description="The same rate by the model version whose score the annotator was compared with.",
            categories=[v["name"] for v in versions],
            series=[("disagreement rate", [v["rate"] for v in versions])],
            kind="percent",
            y_max=1.0,
            headers=["model version", "disagreement rate"],
        )
    )
    charts[-1].rows = [row + [_fmt(v["scored"], "int"), _fmt(v["disagreements"], "int")] for row, v in zip(charts[-1].rows, versions)]
    charts[-1].headers += ["with model score", "disagreements"]
    models = bundle["models"]
    with_metrics = [v for v in models["versions"] if any(x is not None for x in v["metrics"].values())]
    shown = ["ndcg@5", "kendall_tau_b", "unsafe_rate_pooled", "mrr"]
    charts.append(
        line_chart(
            id="model-metrics",
            title="Model metrics across versions",
            description="Test-split metrics of each trained model version, oldest first: NDCG@5, Kendall's tau-b, "
            "MRR (higher is better) and the pooled Unsafe Rate (lower is better).",
            x_labels=[v["name"] for v in with_metrics],
            series=[(key, [v["metrics"][key] for v in with_metrics]) for key in shown],
            y_min=min([0.0] + [v["metrics"][k] for v in with_metrics for k in shown if v["metrics"][k] is not None]),
            y_max=1.0,
            headers=["version", *shown],
        )
    )
    if not with_metrics:
        charts[-1].note = "No model version has test metrics yet: they appear after the first training run."
    quality_summary = bundle["quality"]
    codes = list(quality_summary["flag_counts"])
    charts.append(
        bar_chart(
            id="quality-flags",
            title="Annotator quality flags",
            description="Annotators carrying each quality flag at the last quality check.",
            categories=codes,
            series=[("annotators", [quality_summary["flag_counts"][c] for c in codes])],
            kind="int",
            headers=["flag", "annotators"],
        )
    )
    if not codes:
        charts[-1].note = "No annotator is flagged." if quality_summary["checked"] else "Quality has not been checked yet."
    hist = quality_summary["canary_histogram"]
    charts.append(
        bar_chart(
            id="canary-rates",
            title="Canary pass rates of annotators",
            description="Number of annotators (with enough canaries answered) by canary pass rate "
            "(the paper requires > 98%).",
            categories=[f"{100 * h['low']:.0f}-{100 * h['high']:.0f}%" for h in hist],
            series=[("annotators", [h["n"] for h in hist])],
            kind="int",
            headers=["pass rate", "annotators"],
        )
    )
    progress = bundle["progress"]
    charts.append(
        progress_chart(
            id="progress",
            title="Data collection against targets",
            description=f"Scenarios with {progress['judgments_per_scenario']} judgments, contexts whose scenarios "
            "all have them, and judgments towards the target.",
            rows=[
                ("scenarios", progress["scenarios"]["done"], progress["scenarios"]["total"]),
                ("contexts", progress["contexts"]["done"], progress["contexts"]["total"]),
                ("judgments", progress["judgments"]["towards_target"], progress["judgments"]["target"]),
            ],
        )
    )
    return charts


def key_figures(bundle: dict) -> list[dict]:
    """The headline numbers above the charts, each with the paper's figure for comparison."""
    alpha = bundle["alpha"]["overall"]
    agreement = bundle["modality_agreement"]["by_modality"]
    revisions = bundle["revisions"]["overall"]
    disagreement = bundle["disagreement"]["overall"]
    high = bundle["high_variance"]
    progress = bundle["progress"]
    return [
        {"label": "Krippendorff's alpha, scores (interval)", "value": _fmt(alpha["interval"]),
         "note": f"ordinal {_fmt(alpha['ordinal'])}; {alpha['units']:,} scenarios; paper 0.74"},
        {"label": "Krippendorff's alpha, modality (nominal)", "value": _fmt(alpha["nominal_modality"]), "note": "paper 0.71"},
        {"label": "Modality agreement, text / image / both",
         "value": " / ".join(_fmt(agreement[m]["share"], "percent") for m in analysis.MODALITIES),
         "note": "paper 82% text, 61% image"},
        {"label": "Revised after a grounding check", "value": _fmt(revisions["rate"], "percent"),
         "note": f"{revisions['revised']:,} of {revisions['checks_answered']:,} checks answered "
         f"({revisions['checks_offered']:,} offered); paper < 7%"},
        {"label": "Model-human disagreement rate", "value": _fmt(disagreement["rate"], "percent"),
         "note": f"{disagreement['disagreements']:,} of {disagreement['scored']:,} judgments with a model score"},
        {"label": f"High-variance scenarios (sd > {high['max_sd']:g})", "value": _fmt(high["share"], "percent"),
         "note": f"{high['flagged']:,} of {high['scenarios']:,}; paper about 4.8%"},
        {"label": "Scenarios fully judged", "value": _fmt(progress["scenarios"]["share"], "percent"),
         "note": f"{progress['scenarios']['done']:,} of {progress['scenarios']['total']:,}"},
        {"label": "Annotators flagged", "value": _fmt(bundle["quality"]["flagged"], "int"),
         "note": ", ".join(f"{n:,} {s.replace('_', ' ')}" for s, n in bundle["quality"]["by_status"].items())},
    ]


@researcher_required
def dashboard(request: HttpRequest) -> HttpResponse:
    bundle = analysis.dashboard_bundle(use_cache=request.GET.get("refresh") != "1")
    return render(
        request,
        "research/dashboard.html",
        {"bundle": bundle, "figures": key_figures(bundle), "charts": dashboard_charts(bundle)},
    )


def _admin_url(name: str, pk: int) -> str | None:
    try:
        return reverse(name, args=[pk])
    except NoReverseMatch:
        return None


@researcher_required
def quality_list(request: HttpRequest) -> HttpResponse:
    annotators = quality.flagged_annotators()
    for row in annotators:
        row["admin_url"] = _admin_url("admin:annotation_annotator_change", row["id"])
    items = quality.flagged_items(limit=200)
    for row in items["items"]:
        row["admin_url"] = _admin_url("admin:annotation_scenario_change", row["scenario_id"])
    return render(request, "research/quality.html", {"annotators": annotators, "items": items})
