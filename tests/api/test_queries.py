"""Every list costs the same number of queries whatever the number of rows (no N+1): the
querysets join or prefetch what the serializers read."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation import services
from annotation.dataset.export import service as export_service
from tests.factories import AnnotatorFactory, make_context, make_scenarios, predict
from training import services as training_services
from training.models import TrainingRun

from .conftest import rate_page

pytestmark = pytest.mark.django_db

LISTS = ["contexts", "scenarios", "assignments", "judgments", "predictions", "model-versions", "exports", "training-runs"]
MOST_QUERIES = 5  # token, researcher group check, count, page, one prefetch (assignments)


def grow(world, contexts: int = 3, annotators: int = 3) -> None:
    """More of everything: contexts, scenarios, predictions, pages, checks, exports, runs."""
    for _ in range(contexts):
        context = make_context()
        for scenario in make_scenarios(context, 4):
            predict(scenario, 2.0)
    for _ in range(annotators):
        annotator = AnnotatorFactory()
        for _ in range(2):
            _, judgments = rate_page(annotator, 4)
            services.judgment_reconfirm(
                annotator=annotator, judgment_id=judgments[0].pk, score=3, modality="text", page_token=uuid.uuid4()
            )
    export_service.dataset_export_create(fmt="csv", created_by=world.superuser)
    export_service.dataset_export_create(fmt="jsonl", created_by=world.researcher)
    TrainingRun.objects.filter(status="queued").update(status="failed")
    training_services.training_run_queue(triggered_by=TrainingRun.Trigger.COMMAND)


def queries_per_list(client) -> dict[str, int]:
    counts = {}
    for resource in LISTS:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"/api/v1/{resource}/")
        if response.status_code == 403:
            continue
        assert response.status_code == 200, resource
        counts[resource] = (len(captured), response.json()["count"])
    return counts


@pytest.mark.parametrize("who", ["as_researcher", "as_superuser", "as_alice"])
def test_queries_per_page_do_not_grow_with_the_rows(world, request, who):
    client = request.getfixturevalue(who)
    training_services.training_run_queue(triggered_by=TrainingRun.Trigger.COMMAND)
    before = queries_per_list(client)
    grow(world)
    after = queries_per_list(client)
    assert set(before) == set(after) == (set(LISTS) if who != "as_alice" else {"contexts", "scenarios", "assignments", "judgments"})
    for resource in before:
        assert after[resource][0] == before[resource][0] <= MOST_QUERIES, (resource, before[resource], after[resource])
    if who != "as_alice":  # the lists did grow
        assert all(after[r][1] > before[r][1] for r in before if r != "model-versions"), (before, after)


def test_a_full_page_of_judgments_takes_a_handful_of_queries(world, as_researcher, django_assert_max_num_queries):
    grow(world, contexts=6, annotators=6)
    with django_assert_max_num_queries(MOST_QUERIES):
        page = as_researcher.get("/api/v1/judgments/", {"limit": 500}).json()
    assert len(page["results"]) == page["count"] > 50
