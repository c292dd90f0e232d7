"""The probe figures on the ModelVersion admin page and the researchers' probe pages, from
stored results of a constructed case (no scoring here: tests/training/test_probes_runs.py runs probes)."""

import numpy as np
import pytest
from django.urls import reverse

from morale.roles import researcher_make
from modelloop import services as modelloop_services
from training.metrics import json_ready
from training.models import ProbeResult, ProbeRun
from training.probes.runner import ProbePair, conditions_for, version_figures
from tests.factories import current_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher_client(client, django_user_model):
    user = django_user_model.objects.create_user("rita", password="pw-for-tests-123")
    researcher_make(user)
    client.force_login(user)
    return client


@pytest.fixture
def probed():
    """A candidate probed against the current version, figures from constructed scores."""
    current = current_version()
    candidate = modelloop_services.model_version_create(name="candidate-x", scorer="zero-shot-text-baseline", config={})
    pairs = [ProbePair(i, i // 2, "/a.png", "0" * 64, "a street", "t", float(1 + i), "image", None) for i in range(4)]
    conditions = conditions_for("pilot")
    rng = np.random.default_rng(0)
    scores = {c.name: np.clip(np.arange(1.0, 5.0) + rng.normal(0, 0.5, 4), 1, 5) for c in conditions}
    ref = version_figures(scores, pairs, conditions)
    errors = {(c, int(s)): v for c, by in ref["corruption"]["errors"].items() for s, v in by.items()}
    mine = version_figures(scores, pairs, conditions, reference_errors=errors)
    run = ProbeRun.objects.create(model_version=candidate, against=current, status="succeeded", n_pairs=4, n_contexts=2)
    ProbeResult.objects.create(run=run, model_version=candidate, flip_rate=0.125, rel_mce=1.0, mce=1.0, figures=json_ready(mine))
    ProbeResult.objects.create(run=run, model_version=current, is_reference=True, figures=json_ready(ref))
    return candidate, run


def test_the_admin_page_shows_the_probe_block_and_plot(admin_client, probed):
    candidate, run = probed
    page = admin_client.get(reverse("admin:modelloop_modelversion_change", args=[candidate.pk])).content.decode()
    assert "Robustness probes" in page and f"#{run.pk}" in page and "0.125" in page
    assert reverse("annotation:probe_severity_svg", args=[candidate.pk]) in page
    other = admin_client.get(reverse("admin:modelloop_modelversion_change", args=[current_version().pk])).content.decode()
    assert "not probed yet" in other


def test_the_research_pages_show_the_figures_and_severity_curves(researcher_client, probed):
    candidate, run = probed
    listing = researcher_client.get(reverse("annotation:probes")).content.decode()
    assert "candidate-x" in listing and "not probed yet" in listing  # the baseline has no probe of its own
    detail = researcher_client.get(reverse("annotation:probe_version", args=[candidate.pk])).content.decode()
    assert "Severity curves" in detail and "<polyline" in detail and "gaussian_noise@3" in detail
    svg = researcher_client.get(reverse("annotation:probe_severity_svg", args=[candidate.pk]))
    assert svg["Content-Type"] == "image/svg+xml" and b"<polyline" in svg.content
    assert researcher_client.get(reverse("annotation:probe_severity_svg", args=[current_version().pk])).status_code == 404


def test_the_probe_pages_are_for_researchers_only(client, django_user_model, probed):
    candidate, _ = probed
    client.force_login(django_user_model.objects.create_user("ann", password="pw-for-tests-123"))
    assert client.get(reverse("annotation:probes")).status_code == 403
    assert client.get(reverse("annotation:probe_severity_svg", args=[candidate.pk])).status_code == 403
