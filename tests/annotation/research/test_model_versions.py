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


@pytest.mark.django_db
def test_each_version_says_when_it_became_current_and_how_many_judgments_it_was_trained_on(client):
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from annotation.models import DatasetExport

    export = DatasetExport.objects.create(
        format="jsonl", status="running", counts={"judgments": 120, "splits": {"train": {"judgments": 100}, "test": {"judgments": 20}}}
    )
    version = ModelVersion.objects.create(
        name="head-trig", scorer="efficientnet-minilm-mlp", promoted_at=timezone.now(), metrics={"test": {"ndcg@5": 0.77}}
    )
    run = TrainingRun.objects.create(status="succeeded", model_version=version, export=export, triggered_by="judgments")
    rows = {v["name"]: v for v in model_versions.model_metrics()["versions"]}
    row = rows["head-trig"]
    assert row["promoted_at"] == version.promoted_at.isoformat()
    assert row["trained_on_judgments"] == 100 and row["export_judgments"] == 120
    assert row["training_run_id"] == run.pk and row["triggered_by"] == "new judgments arrived"
    assert row["metric_values"][0] == 0.77
    baseline = rows[current_version().name]
    assert baseline["trained_on_judgments"] is None and baseline["training_run_id"] is None

    from morale.roles import researcher_make

    user = get_user_model().objects.create_user("res", password="pw")
    researcher_make(user)
    client.force_login(user)
    from django.urls import reverse

    page = client.get(reverse("annotation:dashboard") + "?refresh=1").content.decode()
    assert "Model versions" in page and "head-trig" in page and "100 (120)" in page and "new judgments arrived" in page
