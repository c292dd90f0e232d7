"""The researchers' dashboard: every figure from one snapshot (``dashboard_bundle``, cached),
laid out as charts and headline numbers. Imported by ``views`` (and the old analysis shim).
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from ..dataset.table import judgment_table, load_rows
from .agreement import MODALITIES, SCORES, krippendorff_alphas, modality_agreement, rating_distribution
from .charts import Chart, bar_chart, fmt, line_chart, progress_chart
from .items import item_dispersion, judgment_shifts
from .model_versions import model_metrics
from .process import collection_progress, disagreement_rates, revision_rates
from .quality import annotator_quality_summary

DASHBOARD_CACHE_KEY = "morale:research-dashboard:v1"


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


# The bars of a shift chart (paper, table 2): series name -> key of ``items._shift_counts``.
SHIFT_SERIES = (("more acceptable", "up"), ("neutral", "neutral"), ("less acceptable", "down"), ("extreme (>= 3)", "extreme"))


def _shift_series(counts: list[dict]) -> list[tuple[str, list]]:
    return [(name, [c[key] for c in counts]) for name, key in SHIFT_SERIES]


def dashboard_charts(bundle: dict) -> list[Chart]:
    """Lay out the figures of ``dashboard_bundle`` as charts."""
    charts = []
    ratings = bundle["ratings"]
    modalities = list(MODALITIES)
    charts.append(
        bar_chart(
            id="ratings",
            title="Ratings by modality",
            description="Number of judgments giving each score (1-5), by the modality the annotator said drove "
            "the judgment (paper, fig. 5).",
            categories=[str(s) for s in SCORES],
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
            series=_shift_series([shifts["by_modality"][m] for m in modalities]),
            kind="int",
            headers=["modality", *(name for name, _ in SHIFT_SERIES)],
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
            series=_shift_series([by_label[label][m] for label, m in labelled]),
            kind="int",
            headers=["label, modality", *(name for name, _ in SHIFT_SERIES)],
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
    charts[-1].rows = [row + [fmt(b["units"], "int")] for row, b in zip(charts[-1].rows, batches)]
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
    charts[-1].rows = [row + [fmt(agreement["by_modality"][m]["units"], "int")] for row, m in zip(charts[-1].rows, modalities)]
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
    charts[-1].rows = [row + [fmt(v["scored"], "int"), fmt(v["disagreements"], "int")] for row, v in zip(charts[-1].rows, versions)]
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
        {"label": "Krippendorff's alpha, scores (interval)", "value": fmt(alpha["interval"]),
         "note": f"ordinal {fmt(alpha['ordinal'])}; {alpha['units']:,} scenarios; paper 0.74"},
        {"label": "Krippendorff's alpha, modality (nominal)", "value": fmt(alpha["nominal_modality"]), "note": "paper 0.71"},
        {"label": "Modality agreement, text / image / both",
         "value": " / ".join(fmt(agreement[m]["share"], "percent") for m in MODALITIES),
         "note": "paper 82% text, 61% image"},
        {"label": "Revised after a grounding check", "value": fmt(revisions["rate"], "percent"),
         "note": f"{revisions['revised']:,} of {revisions['checks_answered']:,} checks answered "
         f"({revisions['checks_offered']:,} offered); paper < 7%"},
        {"label": "Model-human disagreement rate", "value": fmt(disagreement["rate"], "percent"),
         "note": f"{disagreement['disagreements']:,} of {disagreement['scored']:,} judgments with a model score"},
        {"label": f"High-variance scenarios (sd > {high['max_sd']:g})", "value": fmt(high["share"], "percent"),
         "note": f"{high['flagged']:,} of {high['scenarios']:,}; paper about 4.8%"},
        {"label": "Scenarios fully judged", "value": fmt(progress["scenarios"]["share"], "percent"),
         "note": f"{progress['scenarios']['done']:,} of {progress['scenarios']['total']:,}"},
        {"label": "Annotators flagged", "value": fmt(bundle["quality"]["flagged"], "int"),
         "note": ", ".join(f"{n:,} {s.replace('_', ' ')}" for s, n in bundle["quality"]["by_status"].items())},
    ]
