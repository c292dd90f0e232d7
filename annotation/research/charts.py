"""The inline SVG chart layout of the researchers' pages: coordinates computed here, drawn by
``research/_chart.html`` (no JavaScript, no chart library, no CDN). Imported by ``dashboard``.

Every chart carries a title, a description and its numbers as a table in a <details>
element, for screen readers and for copying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 14, 46


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

    @property
    def plot_w(self) -> int:
        """Width of the plot area of an x-y chart (inside the axes' margins)."""
        return self.width - LEFT - RIGHT

    @property
    def plot_h(self) -> int:
        return self.height - TOP - BOTTOM


def fmt(value, kind: str = "number") -> str:
    """A figure as text for a table or a label: "–" when undefined; kind "percent", "int" or "number"."""
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
    plot_h = chart.plot_h
    chart.axes.append({"x1": LEFT, "y1": TOP, "x2": LEFT, "y2": TOP + plot_h})
    chart.axes.append({"x1": LEFT, "y1": TOP + plot_h, "x2": chart.width - RIGHT, "y2": TOP + plot_h})
    for i in range(steps + 1):
        value = y_min + (y_max - y_min) * i / steps
        y = TOP + plot_h - plot_h * i / steps
        text = f"{100 * value:.0f}%" if kind == "percent" else (f"{value:,.0f}" if kind == "int" else f"{value:.2f}")
        chart.ticks.append({"x": LEFT - 6, "y": round(y + 4, 1), "text": text, "anchor": "end", "grid_y": round(y, 1)})


def _xy_frame(chart: Chart, positions: list, series: list[tuple[str, list]], *, kind: str, y_min: float, y_max) -> float | None:
    """The y axis and the legend of an x-y chart; returns the axis top (``y_max``, else a
    round value above the largest), or None, the chart marked empty, when nothing is drawn."""
    values = [v for _, vs in series for v in vs if v is not None]
    if not positions or not values:
        chart.empty = True
        return None
    top = y_max if y_max is not None else _axis_top(max(values), y_min, kind)
    _y_axis(chart, y_min, top, kind)
    if len(series) > 1:
        chart.legend = [{"name": name, "color": PALETTE[k % len(PALETTE)]} for k, (name, _) in enumerate(series)]
    return top


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
    chart.headers = headers or ["", *[name for name, _ in series]]
    chart.rows = [[c, *[fmt(vs[i], kind) for _, vs in series]] for i, c in enumerate(categories)]
    top = _xy_frame(chart, categories, series, kind=kind, y_min=y_min, y_max=y_max)
    if top is None:
        return chart
    plot_w, plot_h = chart.plot_w, chart.plot_h
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
                    "label": f"{category}, {name}: {fmt(vs[i], kind)}",
                }
            )
        if i % max(1, math.ceil(len(categories) * 9 / plot_w)) == 0:  # ~9 px per character of a label
            chart.ticks.append(
                {"x": round(LEFT + group_w * (i + 0.5), 1), "y": TOP + plot_h + 16,
                 "text": _short(tick_labels[i], max(4, int(group_w // 7))), "anchor": "middle"}
            )
    return chart


def line_chart(
    *, id: str, title: str, description: str, x_labels: list[str], series: list[tuple[str, list]],
    kind: str = "number", y_min: float = 0.0, y_max: float | None = None, headers: list[str] | None = None,
    extra_columns: list[tuple[str, list]] | None = None, tick_labels: list[str] | None = None,
) -> Chart:
    """Lines over ordered x positions (days, versions); None values break a line.

    ``tick_labels``: shorter names under the axis (the table keeps ``x_labels``);
    ``extra_columns``: whole numbers shown in the table only.
    """
    tick_labels = tick_labels or x_labels
    chart = Chart(id=id, title=title, description=description)
    extra_columns = extra_columns or []
    chart.headers = headers or ["", *[name for name, _ in series], *[name for name, _ in extra_columns]]
    chart.rows = [
        [x, *[fmt(vs[i], kind) for _, vs in series], *[fmt(vs[i], "int") for _, vs in extra_columns]]
        for i, x in enumerate(x_labels)
    ]
    top = _xy_frame(chart, x_labels, series, kind=kind, y_min=y_min, y_max=y_max)
    if top is None:
        return chart
    plot_w, plot_h = chart.plot_w, chart.plot_h
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
            dots.append({"x": point[0], "y": point[1], "label": f"{x_labels[i]}, {name}: {fmt(v, kind)}"})
        if segment:
            segments.append(segment)
        for seg in segments:
            chart.lines.append({"points": " ".join(f"{x},{y}" for x, y in seg), "color": color})
        chart.lines.append({"points": "", "color": color, "dots": dots})
    step = max(1, math.ceil(n * (min(widest, 18) * 7 + 10) / plot_w))  # labels must not overlap
    for i, label in enumerate(tick_labels):
        if i % step == 0:
            chart.ticks.append({"x": round(x_at(i), 1), "y": TOP + plot_h + 16, "text": _short(label, 18), "anchor": "middle"})
    return chart


def progress_chart(*, id: str, title: str, description: str, rows: list[tuple[str, int, int]]) -> Chart:
    """Horizontal bars: done of target, per row."""
    chart = Chart(id=id, title=title, description=description, height=40 + 34 * len(rows))
    chart.headers = ["", "done", "target", "share"]
    chart.rows = [[label, fmt(done, "int"), fmt(target, "int"), fmt(done / target if target else None, "percent")] for label, done, target in rows]
    label_w, plot_w = 150, chart.width - 150 - 70
    for i, (label, done, target) in enumerate(rows):
        y = 14 + 34 * i
        share = done / target if target else 0.0
        chart.bars.append({"x": label_w, "y": y, "w": plot_w, "h": 20, "color": "#e6e9ed", "label": f"{label}: target {target:,}"})
        chart.bars.append(
            {"x": label_w, "y": y, "w": round(plot_w * min(share, 1.0), 1), "h": 20, "color": PALETTE[2],
             "label": f"{label}: {done:,} of {target:,} ({fmt(share, 'percent')})"}
        )
        chart.ticks.append({"x": label_w - 8, "y": y + 15, "text": label, "anchor": "end"})
        chart.ticks.append({"x": label_w + plot_w + 6, "y": y + 15, "text": fmt(share if target else None, "percent"), "anchor": "start"})
    chart.empty = not rows
    return chart
