"""Many annotators asking at once never over-fill a scenario (real concurrent requests).

Runs on SQLite (IMMEDIATE transactions) in the first pass and on PostgreSQL
(SELECT ... FOR UPDATE SKIP LOCKED) in the second pass of scripts/test.sh.
"""

import re
from collections import Counter

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.urls import reverse

from annotation.models import Assignment, AssignmentItem, Judgment
from tests.concurrency import run_concurrently
from tests.factories import AnnotatorFactory, make_context, make_scenarios

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CONCURRENT = 24


def rate_page(user):
    client = Client()
    client.force_login(user)
    response = client.get(reverse("annotation:next"))
    if response.url == reverse("annotation:finish"):
        return 0
    page = client.get(response.url).content.decode()
    ids = sorted(set(re.findall(r'name="score-(\d+)"', page)))
    data = {"page_token": re.search(r'name="page_token" value="([^"]+)"', page).group(1)}
    for sid in ids:
        data[f"score-{sid}"], data[f"modality-{sid}"] = "3", "text"
    posted = client.post(response.url, data)
    assert posted.status_code == 302, posted.content[:300]
    return len(ids)


def test_concurrent_requests_never_overfill_scenarios():
    contexts = [make_context() for _ in range(2)]
    for c in contexts:
        make_scenarios(c, 3)  # capacity: 6 scenarios x 3 judgments = 18 < 24 annotators x 3
    annotators = [AnnotatorFactory() for _ in range(CONCURRENT)]
    rated = run_concurrently(rate_page, [(a.user,) for a in annotators])

    per_scenario = Counter(Judgment.objects.filter(phase="initial").values_list("scenario_id", flat=True))
    assert max(per_scenario.values()) == settings.MORALE_JUDGMENTS_PER_SCENARIO
    assert sum(per_scenario.values()) == sum(rated) == 18  # every slot filled, none twice
    per_pair = Counter(Judgment.objects.values_list("annotator_id", "scenario_id", "phase"))
    assert max(per_pair.values()) == 1


def test_concurrent_assignment_requests_hold_at_most_capacity():
    make_scenarios(make_context(), 4)
    annotators = [AnnotatorFactory() for _ in range(CONCURRENT)]

    def ask(user):
        client = Client()
        client.force_login(user)
        return client.get(reverse("annotation:next")).url

    run_concurrently(ask, [(a.user,) for a in annotators])
    holds = Counter(
        AssignmentItem.objects.filter(assignment__status="active").values_list("scenario_id", flat=True)
    )
    assert max(holds.values()) <= settings.MORALE_JUDGMENTS_PER_SCENARIO
    assert Assignment.objects.filter(status="active").count() == 3


def test_same_annotator_in_many_tabs_gets_one_page():
    make_scenarios(make_context(), 4)
    user = AnnotatorFactory().user

    def ask():
        client = Client()
        client.force_login(user)
        return client.get(reverse("annotation:next")).url

    urls = run_concurrently(ask, [()] * 16)
    assert len(set(urls)) == 1
    assert Assignment.objects.count() == 1


@pytest.mark.postgres
def test_the_postgres_pass_really_runs_on_postgres():
    assert connection.vendor == "postgresql"
