"""The model versions' test metrics, oldest first, for the dashboard: from each version, else
from the training run that produced it (the one reader of training in annotation)."""

from __future__ import annotations

from modelloop.models import ModelVersion
from training.models import TrainingRun

from .numbers import json_number

MODEL_METRIC_KEYS = ("ndcg@5", "mrr", "kendall_tau_b", "unsafe_rate_pooled", "auc_safety_pooled", "ece")


def _trained_on(counts) -> tuple[int | None, int | None]:
    """(judgments in the export's train split, in the whole export) from ``DatasetExport.counts``."""
    if not isinstance(counts, dict):
        return None, None
    total = counts.get("judgments")
    train = (counts.get("splits") or {}).get("train", {}).get("judgments") if isinstance(counts.get("splits"), dict) else None
    as_int = lambda v: v if isinstance(v, int) and not isinstance(v, bool) else None  # noqa: E731
    return as_int(train), as_int(total)


def model_metrics() -> dict:
    """Test metrics of each model version, oldest first (``ModelVersion.metrics["test"]``,
    else the test metrics of the training run that produced it), with when it became
    current and how many judgments it was trained on.

    ``{"keys": [...], "versions": [{"id", "name", "is_current", "created_at", "promoted_at"
    (ISO time it last became current, or None), "metrics": {key: value or None},
    "metric_values" (the same, in the order of "keys"), "training_run_id", "triggered_by" (what
    queued that run, its label), "trained_on_judgments" (the
    judgments of its export's train split), "export_judgments" (all judgments of that
    export, test split included)}]}``. Versions without any metric are listed with all
    values None (e.g. the built-in prior); those not trained here have None for the run fields.
    """
    run_metrics: dict[int, tuple[int, dict]] = {}
    run_info: dict[int, tuple[str, int | None, int | None]] = {}
    for run_id, version_id, metrics, triggered_by, counts in (
        TrainingRun.objects.filter(model_version__isnull=False)
        .order_by("id")
        .values_list("id", "model_version_id", "metrics", "triggered_by", "export__counts")
    ):
        run_metrics[version_id] = (run_id, metrics or {})
        label = TrainingRun.Trigger(triggered_by).label if triggered_by in TrainingRun.Trigger.values else triggered_by
        run_info[version_id] = (label, *_trained_on(counts))
    versions = []
    for pk, name, is_current, created_at, promoted_at, metrics in (
        ModelVersion.objects.order_by("created_at", "id").values_list(
            "pk", "name", "is_current", "created_at", "promoted_at", "metrics"
        )
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
            values[key] = json_number(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
        versions.append(
            {
                "id": pk,
                "name": name,
                "is_current": is_current,
                "created_at": created_at.isoformat(),
                "promoted_at": promoted_at.isoformat() if promoted_at else None,
                "metrics": values,
                "metric_values": [values[key] for key in MODEL_METRIC_KEYS],  # in "keys" order, for tables
                "training_run_id": run_id,
                "triggered_by": run_info.get(pk, (None, None, None))[0],
                "trained_on_judgments": run_info.get(pk, (None, None, None))[1],
                "export_judgments": run_info.get(pk, (None, None, None))[2],
            }
        )
    return {"keys": list(MODEL_METRIC_KEYS), "versions": versions}
