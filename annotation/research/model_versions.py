"""The model versions' test metrics, oldest first, for the dashboard: from each version, else
from the training run that produced it (the one reader of training in annotation)."""

from __future__ import annotations

from modelloop.models import ModelVersion
from training.models import TrainingRun

from .numbers import json_number

MODEL_METRIC_KEYS = ("ndcg@5", "mrr", "kendall_tau_b", "unsafe_rate_pooled", "auc_safety_pooled", "ece")


def model_metrics() -> dict:
    """Test metrics of each model version, oldest first (``ModelVersion.metrics["test"]``,
    else the test metrics of the training run that produced it).

    ``{"keys": [...], "versions": [{"id", "name", "is_current", "created_at", "metrics":
    {key: value or None}, "training_run_id"}]}``. Versions without any metric are listed
    with all values None (e.g. the zero-shot baseline).
    """
    run_metrics: dict[int, tuple[int, dict]] = {}
    for run_id, version_id, metrics in (
        TrainingRun.objects.filter(model_version__isnull=False).order_by("id").values_list("id", "model_version_id", "metrics")
    ):
        run_metrics[version_id] = (run_id, metrics or {})
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
            values[key] = json_number(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
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
