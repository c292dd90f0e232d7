"""The ModelVersion and TrainingRun admin pages show what annotators see: MAE, ECE and the
grounding-check share beside NDCG@5 and Unsafe Rate, before and after calibration."""

import pytest
from django.urls import reverse

from modelloop.models import ModelVersion
from training.models import TrainingRun
from tests.factories import current_version

pytestmark = pytest.mark.django_db

FIGURES = {
    "test": {"ndcg@5": 0.81, "unsafe_rate_pooled": 0.2, "mae": 0.4321, "ece": 0.1234, "grounding_share": 0.3456,
             "n_lists": 12},
    "test_before_calibration": {"ndcg@5": 0.81, "mae": 0.5},
    "gate": {"candidate": {"mae": 0.4321}, "current": {"mae": 0.9876}},
    "warnings": ["warning: the test split has 12 list(s), fewer than 20"],
    "predictions_csv": "/var/evaluations/training-run1-predictions.csv",
}


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("staff", "s@example.org", "pw-for-tests"))
    return client


def test_the_version_page_shows_the_figures_annotators_see(staff):
    version = current_version()
    ModelVersion.objects.filter(pk=version.pk).update(metrics=FIGURES)
    page = staff.get(reverse("admin:modelloop_modelversion_change", args=[version.pk])).content.decode()
    for text in ("MAE vs human mean", "0.4321", "0.9876", "ECE", "0.1234", "grounding check", "0.3456",
                 "before calibration", "fewer than 20"):
        assert text in page, text


def test_a_version_without_figures_says_so(staff):
    version = current_version()
    ModelVersion.objects.filter(pk=version.pk).update(metrics={})
    page = staff.get(reverse("admin:modelloop_modelversion_change", args=[version.pk])).content.decode()
    assert "no test figures stored" in page


def test_the_run_page_shows_them_too(staff):
    run = TrainingRun.objects.create(status="succeeded", metrics=FIGURES)
    page = staff.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    for text in ("MAE vs human mean", "0.4321", "0.3456", "fewer than 20", "training-run1-predictions.csv"):
        assert text in page, text
