"""The model versions' test metrics (annotation.research.model_versions)."""

import pytest

from annotation.research import model_versions
from modelloop.models import ModelVersion
from tests.factories import current_version
from training.models import TrainingRun


@pytest.mark.django_db
def test_model_metrics_across_versions_from_versions_and_training_runs():
    trained = ModelVersion.objects.create(
        name="head-a", scorer="efficientnet-minilm-mlp", metrics={"test": {"ndcg@5": 0.81, "unsafe_rate_pooled": 0.12}}
    )
    from_run = ModelVersion.objects.create(name="head-b", scorer="efficientnet-minilm-mlp")
    run = TrainingRun.objects.create(
        status="succeeded", model_version=from_run, metrics={"test": {"ndcg@5": 0.85, "kendall_tau_b": 0.4, "mrr": 0.9}}
    )
    result = model_versions.model_metrics()
    names = [v["name"] for v in result["versions"]]
    assert names.index("head-a") < names.index("head-b")
    rows = {v["name"]: v for v in result["versions"]}
    assert rows["head-a"]["metrics"]["ndcg@5"] == 0.81 and rows["head-a"]["metrics"]["unsafe_rate_pooled"] == 0.12
    assert rows["head-a"]["metrics"]["mrr"] is None
    assert rows["head-b"]["metrics"]["kendall_tau_b"] == 0.4 and rows["head-b"]["training_run_id"] == run.pk
    assert all(v is None for v in rows[current_version().name]["metrics"].values())
    assert trained.pk
