"""Query budget of the annotator flow, per step (issue 16): a 4-judgment page with its
grounding check and the redirect to the next page costs at most PAGE_BUDGET queries.

The counts are of the real views through Django's test client (the whole middleware
stack: session, user and annotator loading included), so a query added anywhere on the
hot path fails here. The tests are transactional so that ``transaction.atomic`` opens real
transactions, as in production (inside a test's own transaction every atomic block would
add a SAVEPOINT and a RELEASE to the count). They run on SQLite and, in the PostgreSQL pass
of scripts/test.sh, on PostgreSQL (where the claim's SELECT ... FOR UPDATE is real).
"""

import random

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation.models import Assignment, Judgment
from bench.loadtest.pages import fill_check_form, fill_rating_form
from tests.factories import AnnotatorFactory, make_context, make_scenarios, predict

pytestmark = pytest.mark.django_db(transaction=True)

PAGE_BUDGET = 30  # issue 16: <= 30 queries per 4-judgment page including its check and next page
# Per step: (SQL statements, transactions). The budget counts statements that read or
# write rows; each transaction adds its BEGIN and COMMIT, which Django logs too and
# ``django_assert_max_num_queries`` counts, so they are allowed for on top.
STEP_BUDGET = {
    "next page": (7, 1),  # user+annotator, onboarding/late/open in one, candidates, lock, claims, page, items
    "rating page": (4, 0),  # user+annotator, the page, first render, progress
    "submit": (9, 1),  # user+annotator, the page, lock, reports, scores, judgments, 3 counters/status
    "check page": (4, 0),  # user+annotator, the page's review, first shown, progress
    "check submit": (6, 1),  # user+annotator, the page's review, lock, answered, answers, complete
}
STEPS_OF_A_PAGE = list(STEP_BUDGET)
# Before an annotator has completed a page, progress has no page rows to carry its counts
# (selectors.annotator_progress): one query more where it is shown.
FIRST_PAGE_EXTRA = {"rating page": 1, "check page": 1}
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
MODEL_SCORES = [3.0, 3.2, 1.0, 5.0]  # against a rating of 3: two agree, two ask for a check


def sql_only(queries: list[str]) -> list[str]:
    return [q for q in queries if not q.lstrip().upper().startswith(TRANSACTION_CONTROL)]


def _contexts(n):
    for _ in range(n):
        for scenario, score in zip(make_scenarios(make_context(), 4), MODEL_SCORES, strict=True):
            predict(scenario, score)


def walk_page(send, rng):
    """One page as the load bench's clients walk it (bench/loadtest/clients.py): the next
    page, the rating form, its submit (every scenario rated 3), the grounding check and its
    answers. ``send(step, method, url, data)`` makes each request. Returns the responses."""
    r = send("next page", "GET", "/annotate/")
    assert r.status_code == 302 and r["Location"].startswith("/annotate/"), r
    rate_url = r["Location"]
    page = send("rating page", "GET", rate_url)
    assert page.status_code == 200
    data, sids = fill_rating_form(page.content.decode(), rng)
    assert len(sids) == 4
    data |= {f"score-{sid}": "3" for sid in sids}
    r = send("submit", "POST", rate_url, data)
    assert r.status_code == 302 and r["Location"] == rate_url + "check/", r  # straight to the check
    check_url = r["Location"]
    check = send("check page", "GET", check_url)
    assert check.status_code == 200
    data, jids = fill_check_form(check.content.decode(), rng, revise_rate=0.5)
    assert len(jids) == 2
    r = send("check submit", "POST", check_url, data)
    assert r.status_code == 302 and r["Location"] == "/annotate/", r


@pytest.fixture
def measured(client, django_assert_max_num_queries):
    """An onboarded annotator, logged in, and a sender that holds each step to its budget
    (all statements, transactions included) and records its queries."""
    _contexts(4)
    annotator = AnnotatorFactory()
    client.force_login(annotator.user)
    counts: dict[str, list[list[str]]] = {}

    def send(step, method, url, data=None):
        statements, transactions = STEP_BUDGET[step]
        if step in FIRST_PAGE_EXTRA and not Assignment.objects.filter(annotator=annotator, status="completed").exists():
            statements += FIRST_PAGE_EXTRA[step]
        with django_assert_max_num_queries(statements + 2 * transactions) as ctx:
            r = client.get(url) if method == "GET" else client.post(url, data)
        counts.setdefault(step, []).append([q["sql"] for q in ctx.captured_queries])
        return r

    return annotator, send, counts


def _report(counts, step, i=-1):
    queries = counts[step][i]
    return f"{step}: {len(sql_only(queries))} queries\n" + "\n".join(f"  {q[:160]}" for q in queries)


def test_each_step_of_a_page_stays_in_its_budget(measured):
    annotator, send, counts = measured
    rng = random.Random(1)
    for _ in range(3):  # the first page and two more (a completed page makes the later ones' progress)
        walk_page(send, rng)
    for step in STEPS_OF_A_PAGE:
        for i, queries in enumerate(counts[step]):
            extra = FIRST_PAGE_EXTRA.get(step, 0) if i == 0 else 0
            assert len(sql_only(queries)) <= STEP_BUDGET[step][0] + extra, _report(counts, step, i)
    assert Judgment.objects.filter(annotator=annotator, phase="initial").count() == 12
    assert Judgment.objects.filter(annotator=annotator, phase="reconfirmed").count() == 6
    assert Assignment.objects.filter(annotator=annotator, status="completed").count() == 3


def test_a_whole_page_with_its_check_and_next_page_is_within_30_queries(measured):
    _, send, counts = measured
    rng = random.Random(2)
    walk_page(send, rng)
    walk_page(send, rng)
    per_page = sum(len(sql_only(counts[step][-1])) for step in STEPS_OF_A_PAGE)
    assert sum(statements for statements, _ in STEP_BUDGET.values()) <= PAGE_BUDGET
    assert per_page <= PAGE_BUDGET, "\n".join(_report(counts, step) for step in STEPS_OF_A_PAGE)


def test_the_session_and_the_annotator_cost_one_query(measured, client):
    """Signed-cookie session (no session row to read or write) and the user read with their
    annotator: a page that needs nothing else costs exactly one query."""
    annotator, send, counts = measured
    walk_page(send, random.Random(3))
    with CaptureQueriesContext(connection) as ctx:
        r = client.get("/finish/")
    assert r.status_code == 200
    queries = [q["sql"] for q in ctx.captured_queries]
    assert not [q for q in queries if "django_session" in q]
    user_reads = [q for q in queries if 'FROM "auth_user"' in q]
    assert len(user_reads) == 1 and '"annotation_annotator"."consent_version"' in user_reads[0]
    assert not [q for q in queries if q.startswith('SELECT "annotation_annotator"')]


def test_a_double_submit_stores_one_set_and_both_go_to_the_check(measured, client):
    """The submit's shortcut to the next step also answers a repeated submit of the page."""
    annotator, send, counts = measured
    r = client.get("/annotate/")
    rate_url = r["Location"]
    data, sids = fill_rating_form(client.get(rate_url).content.decode(), random.Random(4))
    data |= {f"score-{sid}": "3" for sid in sids}
    first, second = client.post(rate_url, data), client.post(rate_url, data)
    assert first["Location"] == second["Location"] == rate_url + "check/"
    assert Judgment.objects.filter(annotator=annotator).count() == 4
