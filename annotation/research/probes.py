"""The robustness probes' figures for the researchers' pages (issue 14): the latest probe of
each model version, and one version's figures with its severity curves. Reads
``training.models.ProbeResult``; the figures themselves come from ``training.probes``."""

from __future__ import annotations

from modelloop.models import ModelVersion
from training.models import ProbeResult, ProbeRun
from training.probes.report import HEADLINE, headline, severity_table

from .charts import Chart, fmt, line_chart


def latest_probes() -> list[dict]:
    """Per model version (oldest first), the headline figures of its latest succeeded probe (None: not probed)."""
    latest: dict[int, ProbeResult] = {}
    for result in (
        ProbeResult.objects.filter(run__status=ProbeRun.Status.SUCCEEDED, is_reference=False)
        .select_related("run", "run__against")
        .order_by("run_id")
    ):
        latest[result.model_version_id] = result
    rows = []
    for version in ModelVersion.objects.order_by("created_at", "id"):
        result = latest.get(version.pk)
        values = headline(result) if result else {}
        rows.append({
            "id": version.pk,
            "name": version.name,
            "is_current": version.is_current,
            "run": result.run if result else None,
            "cells": [fmt(values.get(key)) for key, _ in HEADLINE] if result else [],
        })
    return rows


def severity_chart(results: list[ProbeResult], *, id: str = "severity") -> Chart:
    """Error (MAE against the human mean) per corruption by severity, one line per corruption
    and version, with the clean error as severity 0."""
    series = []
    severities: list[int] = []
    for result in results:
        found_severities, curves = severity_table(result)
        severities = severities or found_severities
        prefix = "reference " if result.is_reference else ""
        for corruption, values in curves:
            series.append((f"{prefix}{result.model_version.name}: {corruption}", [result.clean_error, *values]))
    chart = line_chart(
        id=id,
        title="Error under corruption, by severity",
        description="Mean absolute error against the human mean, clean (0) and under each corruption at each "
        "severity; lower is better. CE divides the summed errors by the reference's.",
        x_labels=["0 (clean)", *[str(s) for s in severities]],
        series=series,
        headers=["severity", *[name for name, _ in series]],
    )
    chart.legend = [{"name": name} for name, _ in series]
    return chart


def probe_detail(version: ModelVersion) -> dict:
    """The latest succeeded probe of ``version``: its run, its and its reference's results, the severity chart."""
    run = (
        ProbeRun.objects.filter(model_version=version, status=ProbeRun.Status.SUCCEEDED)
        .select_related("against", "export")
        .order_by("-id")
        .first()
    )
    if run is None:
        return {"run": None, "results": [], "chart": None, "headline": HEADLINE}
    results = list(run.results.select_related("model_version").order_by("is_reference"))
    return {
        "run": run,
        "results": [
            {
                "result": r,
                "cells": [fmt(headline(r).get(key)) for key, _ in HEADLINE],
                "conditions": r.figures.get("conditions", []),
                "by_modality": r.figures.get("modality", {}).get("by_human_modality", {}),
            }
            for r in results
        ],
        "humans": results[0].figures.get("human_modality", {}) if results else {},
        "chart": severity_chart(results),
        "headline": HEADLINE,
    }
