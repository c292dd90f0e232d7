"""seconds_spent is measured on the server: from the rating page's first render and from the
first time a grounding check was shown. A form field the browser sends changes nothing, so
the too-fast flag cannot be dodged."""

import re
import time
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation import services
from annotation.models import Assignment, AssignmentItem, Judgment
from tests.factories import AnnotatorFactory, make_context, make_scenarios, predict

pytestmark = pytest.mark.django_db


@pytest.fixture
def annotator():
    return AnnotatorFactory()


@pytest.fixture
def logged_in(client, annotator):
    client.force_login(annotator.user)
    return client


def open_rating_page(client) -> tuple[str, str]:
    rate_url = client.get(reverse("annotation:next")).url
    return rate_url, client.get(rate_url).content.decode()


def rating_form(html: str, score=3, **extra) -> dict:
    data = {"page_token": re.search(r'name="page_token" value="([^"]+)"', html).group(1), **extra}
    for sid in set(re.findall(r'name="score-(\d+)"', html)):
        data[f"score-{sid}"] = str(score)
        data[f"modality-{sid}"] = "text"
    return data


def backdate(assignment_filter, field: str, seconds: float) -> None:
    """As if the page had been shown `seconds` ago (the test does not wait)."""
    Assignment.objects.filter(**assignment_filter).update(**{field: timezone.now() - timedelta(seconds=seconds)})


@pytest.mark.parametrize("forged", [f"{time.time() - 3600:.3f}", f"{time.time() + 60:.3f}", "nonsense", None])
def test_a_forged_rendered_at_does_not_change_seconds_spent(logged_in, annotator, forged):
    make_scenarios(make_context(), 4)
    rate_url, html = open_rating_page(logged_in)
    backdate({"annotator": annotator}, "rendered_at", 8.0)  # 8 s on the page, 4 scenarios
    extra = {} if forged is None else {"rendered_at": forged}
    assert logged_in.post(rate_url, rating_form(html, **extra)).status_code == 302
    seconds = list(Judgment.objects.filter(annotator=annotator).values_list("seconds_spent", flat=True))
    assert len(seconds) == 4 and all(2.0 <= s < 3.0 for s in seconds), seconds


def test_the_first_render_counts_reloading_the_page_does_not_restart_the_clock(logged_in, annotator):
    make_scenarios(make_context(), 2)
    rate_url, _ = open_rating_page(logged_in)
    first = Assignment.objects.get(annotator=annotator).rendered_at
    assert first is not None
    logged_in.get(rate_url)
    assert Assignment.objects.get(annotator=annotator).rendered_at == first


def test_a_page_posted_without_ever_being_rendered_counts_from_its_creation(logged_in, annotator):
    """A script that skips the GET gains nothing: the page cannot have been seen before it existed."""
    make_scenarios(make_context(), 2)
    rate_url = logged_in.get(reverse("annotation:next")).url
    page = Assignment.objects.get(annotator=annotator)
    assert page.rendered_at is None
    data = {"page_token": str(uuid.uuid4()), "rendered_at": f"{time.time() - 3600:.3f}"}
    for item in page.items.all():
        data[f"score-{item.scenario_id}"], data[f"modality-{item.scenario_id}"] = "4", "image"
    assert logged_in.post(rate_url, data).status_code == 302
    assert all(s < 1.0 for s in Judgment.objects.values_list("seconds_spent", flat=True))


def test_the_check_page_measures_from_when_it_was_shown(logged_in, annotator):
    scenarios = make_scenarios(make_context(), 3)
    for s in scenarios[:2]:
        predict(s, 1.0)  # both disagree with a 5
    predict(scenarios[2], 5.0)
    rate_url, html = open_rating_page(logged_in)
    check_url = logged_in.post(rate_url, rating_form(html, score=5)).url
    assert check_url.endswith("/check/")
    check_html = logged_in.get(check_url).content.decode()
    items = AssignmentItem.objects.filter(check_shown_at__isnull=False)
    assert set(items.values_list("scenario_id", flat=True)) == {scenarios[0].pk, scenarios[1].pk}
    items.update(check_shown_at=timezone.now() - timedelta(seconds=6))  # 6 s on the check page, 2 checks
    initial = Judgment.objects.filter(annotator=annotator, scenario__in=scenarios[:2])
    token = re.search(r'name="page_token" value="([^"]+)"', check_html).group(1)
    check_items = re.search(r'name="check_items" value="([^"]+)"', check_html).group(1)
    answers = {"page_token": token, "check_items": check_items, "rendered_at": f"{time.time() - 3600:.3f}"}
    for j in initial:
        answers[f"modality-{j.pk}"], answers[f"decision-{j.pk}"] = "image", "keep"
    assert logged_in.post(check_url, answers).status_code == 302
    seconds = list(Judgment.objects.filter(phase="reconfirmed").values_list("seconds_spent", flat=True))
    assert len(seconds) == 2 and all(3.0 <= s < 4.0 for s in seconds), seconds


def test_a_check_answered_without_being_shown_took_no_time(annotator):
    scenario = make_scenarios(make_context(), 1)[0]
    predict(scenario, 1.0)
    page = services.assignment_get_or_create(annotator=annotator)
    (initial,) = services.assignment_submit_ratings(
        annotator=annotator, assignment_id=page.pk, ratings=[services.RatingInput(scenario.pk, 5, "text")],
        page_token=uuid.uuid4(),
    )
    answer = services.judgment_reconfirm(
        annotator=annotator, judgment_id=initial.pk, score=5, modality="text", page_token=uuid.uuid4()
    )
    assert answer.seconds_spent == 0.0


def test_late_checks_are_marked_on_their_own_pages(annotator):
    """Checks shown later in the session belong to earlier pages; each item keeps its own time."""
    first, second = make_scenarios(make_context(), 1)[0], make_scenarios(make_context(), 1)[0]
    judgments = []
    for _ in range(2):
        page = services.assignment_get_or_create(annotator=annotator)
        judgments += services.assignment_submit_ratings(
            annotator=annotator, assignment_id=page.pk,
            ratings=[services.RatingInput(i.scenario_id, 5, "text") for i in page.items.all()],
            page_token=uuid.uuid4(),
        )
        services.assignment_complete(annotator=annotator, assignment_id=page.pk)
    shown = timezone.now() - timedelta(seconds=4)
    services.checks_mark_shown(annotator=annotator, judgment_ids=[j.pk for j in judgments], now=shown)
    services.checks_mark_shown(annotator=annotator, judgment_ids=[j.pk for j in judgments])  # a reload
    assert set(AssignmentItem.objects.values_list("scenario_id", "check_shown_at")) == {
        (first.pk, shown), (second.pk, shown),
    }
    # Another annotator's judgment ids mark nothing of theirs.
    other = AnnotatorFactory()
    AssignmentItem.objects.update(check_shown_at=None)
    services.checks_mark_shown(annotator=other, judgment_ids=[j.pk for j in judgments])
    assert not AssignmentItem.objects.filter(check_shown_at__isnull=False).exists()
