"""Query budget of the annotator flow, per step (issue 16): a 4-judgment page with its
grounding check and the redirect to the next page costs at most PAGE_BUDGET queries.

The counts are of the real views through Django's test client (whole middleware stack:
session, user and annotator loading included), so a query added anywhere on the hot path
fails here. Runs on SQLite and on PostgreSQL (the PostgreSQL pass of scripts/test.sh).
"""

import random
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.loadtest.pages import fill_check_form, fill_rating_form
from tests.factories import AnnotatorFactory, make_context, make_scenarios, predict

pytestmark = pytest.mark.django_db

PAGE_BUDGET = 30  # issue 16: <= 30 queries per 4-judgment page including its check and next page


def _contexts(n=3, per_page=4):
    """Contexts of 4 scenarios, each with a prediction: two agree with a 3, two do not."""
    for _ in range(n):
        for i, scenario in enumerate(make_scenarios(make_context(), per_page)):
            predict(scenario, [3.0, 3.2, 1.0, 5.0][i])


def walk_page(client, rng, record):
    """One page as the load bench's client walks it; ``record(step, method, url, data)`` sends each request."""
    r = record("next", "GET", "/annotate/")
    assert r.status_code == 302, r.content[:300]
    rate_url = r["Location"]
    assert re.match(r"^/annotate/\d+/$", rate_url), rate_url
    r = record("rating page", "GET", rate_url)
    assert r.status_code == 200
    data, sids = fill_rating_form(r.content.decode(), rng)
    assert len(sids) == 4
    for sid in sids:
        data[f"score-{sid}"] = "3"
    r = record("submit", "POST", rate_url, data)
    assert r.status_code == 302, r.content[:500]
    r = record("review", "GET", r["Location"])
    assert r.status_code == 302 and r["Location"].endswith("/check/"), r
    check_url = r["Location"]
    r = record("check page", "GET", check_url)
    assert r.status_code == 200
    data, jids = fill_check_form(r.content.decode(), rng, revise_rate=0.5)
    assert len(jids) == 2
    r = record("check submit", "POST", check_url, data)
    assert r.status_code == 302, r.content[:500]
    r = record("review after check", "GET", r["Location"])
    assert r.status_code == 302 and r["Location"] == "/annotate/", r


def test_print_counts(client):
    _contexts()
    annotator = AnnotatorFactory()
    client.force_login(annotator.user)
    rng = random.Random(1)
    counts = {}

    def record(step, method, url, data=None):
        with CaptureQueriesContext(connection) as ctx:
            r = client.get(url) if method == "GET" else client.post(url, data)
        counts.setdefault(step, []).append([q["sql"][:200] for q in ctx.captured_queries])
        return r

    walk_page(client, rng, record)
    walk_page(client, rng, record)
    total = 0
    for step, runs in counts.items():
        qs = runs[-1]
        total += len(qs)
        print(f"\n== {step}: {len(qs)}")
        for q in qs:
            print("   ", q)
    print("TOTAL", total)
