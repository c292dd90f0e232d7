"""Skip and report an item, the page's comment, and the review of written scenarios.

Services first (what is stored, when a scenario leaves the pool, what a researcher's
decision does), then the rating page over HTTP (report and skip without losing what was
typed, bad input, other people's pages).
"""

import re
import uuid

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotation import selectors, services
from annotation.models import Assignment, ItemReport, Judgment, PageComment, Scenario
from tests.annotation.dataset.helpers import rate_page
from tests.factories import AnnotatorFactory, UserFactory, make_canary, make_context, make_scenarios

from .test_views import form_for, open_page

pytestmark = pytest.mark.django_db


def page_of(annotator) -> Assignment:
    return services.assignment_get_or_create(annotator=annotator)


def report(annotator, assignment, scenario, reason="broken_image", note="", **kwargs):
    return services.item_report(
        annotator=annotator, assignment_id=assignment.pk, scenario_id=scenario.pk, reason=reason, note=note, **kwargs
    )


def submit(annotator, assignment, ratings, **kwargs):
    return services.assignment_submit_ratings(
        annotator=annotator,
        assignment_id=assignment.pk,
        ratings=[services.RatingInput(sid, score, "text") for sid, score in ratings.items()],
        page_token=uuid.uuid4(),
        **kwargs,
    )


@pytest.fixture
def context_with_scenarios():
    context = make_context("a child crossing a busy street")
    return context, make_scenarios(context, 3)


# --- reports: the service ----------------------------------------------------------------------
def test_a_reported_scenario_is_skipped_and_the_page_submits_without_it(context_with_scenarios):
    _, scenarios = context_with_scenarios
    annotator = AnnotatorFactory()
    assignment = page_of(annotator)
    reported, *others = scenarios
    stored = report(annotator, assignment, reported, reason="nonsense")
    assert (stored.reason, stored.decision, stored.assignment_id) == ("nonsense", "", assignment.pk)

    judgments = submit(annotator, assignment, {s.pk: 4 for s in others})
    assert sorted(j.scenario_id for j in judgments) == sorted(s.pk for s in others)
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.SUBMITTED
    reported.refresh_from_db()
    assert reported.judgment_count == 0  # its slot goes back to others
    assert [s.judgment_count for s in Scenario.objects.filter(pk__in=[s.pk for s in others])] == [1, 1]


def test_a_rating_posted_for_a_reported_scenario_is_not_stored(context_with_scenarios):
    _, scenarios = context_with_scenarios
    annotator = AnnotatorFactory()
    assignment = page_of(annotator)
    report(annotator, assignment, scenarios[0])
    judgments = submit(annotator, assignment, {s.pk: 2 for s in scenarios})
    assert scenarios[0].pk not in {j.scenario_id for j in judgments} and len(judgments) == 2


def test_the_page_still_needs_every_scenario_that_was_not_reported(context_with_scenarios):
    _, scenarios = context_with_scenarios
    annotator = AnnotatorFactory()
    assignment = page_of(annotator)
    report(annotator, assignment, scenarios[0])
    with pytest.raises(ValidationError, match="rate every scenario"):
        submit(annotator, assignment, {scenarios[1].pk: 3})
    assert not Judgment.objects.exists()


def test_reporting_twice_keeps_the_first_report(context_with_scenarios):
    _, scenarios = context_with_scenarios
    annotator = AnnotatorFactory()
    assignment = page_of(annotator)
    first = report(annotator, assignment, scenarios[0], reason="offensive")
    again = report(annotator, assignment, scenarios[0], reason="other", note="changed my mind")
    assert again.pk == first.pk and ItemReport.objects.get().reason == "offensive"


@pytest.mark.parametrize(
    ("reason", "note", "message"),
    [
        (None, "", "choose what is wrong"),
        ("rude", "", "choose what is wrong"),
        ("other", "   ", "what is wrong"),
        ("other", "x" * 1001, "under 1000 characters"),
        ("nonsense", ["a list"], "must be text"),
    ],
)
def test_a_bad_report_is_refused_and_stores_nothing(context_with_scenarios, reason, note, message):
    _, scenarios = context_with_scenarios
    annotator = AnnotatorFactory()
    assignment = page_of(annotator)
    with pytest.raises(ValidationError, match=message):
        report(annotator, assignment, scenarios[0], reason=reason, note=note)
    assert not ItemReport.objects.exists()


def test_only_a_scenario_on_your_own_page_can_be_reported(context_with_scenarios):
    context, scenarios = context_with_scenarios
    mine, someone = AnnotatorFactory(), AnnotatorFactory()
    assignment = page_of(mine)
    elsewhere = make_scenarios(make_context("another image"), 1)[0]
    with pytest.raises(Scenario.DoesNotExist):
        report(mine, assignment, elsewhere)
    with pytest.raises(Assignment.DoesNotExist):
        report(someone, assignment, scenarios[0])
    assert not ItemReport.objects.exists()


def test_reports_from_two_annotators_take_a_scenario_out_of_the_pool(context_with_scenarios):
    _, scenarios = context_with_scenarios
    target = scenarios[0]
    first, second, third = AnnotatorFactory(), AnnotatorFactory(), AnnotatorFactory()
    report(first, page_of(first), target)
    target.refresh_from_db()
    assert target.review_status == Scenario.Review.ACCEPTED  # one report: still given out
    assert target in selectors.open_scenarios_for(second)
    assert target not in selectors.open_scenarios_for(first)  # never shown to its reporter again
    report(second, page_of(second), target, reason="offensive")
    target.refresh_from_db()
    assert target.review_status == Scenario.Review.REPORTED
    assert target not in selectors.open_scenarios_for(third)
    assert [i.scenario_id for i in page_of(third).items.all()].count(target.pk) == 0


def test_the_number_of_reports_that_hold_a_scenario_is_a_setting(context_with_scenarios, settings):
    settings.MORALE_REPORTS_TO_HOLD = 1
    _, scenarios = context_with_scenarios
    annotator = AnnotatorFactory()
    report(annotator, page_of(annotator), scenarios[0])
    scenarios[0].refresh_from_db()
    assert scenarios[0].review_status == Scenario.Review.REPORTED
    settings.MORALE_REPORTS_TO_HOLD = 0
    other = AnnotatorFactory()
    report(other, page_of(other), scenarios[1])
    scenarios[1].refresh_from_db()
    assert scenarios[1].review_status == Scenario.Review.ACCEPTED


def test_keeping_a_reported_scenario_returns_it_to_the_pool_and_closes_its_reports(context_with_scenarios):
    _, scenarios = context_with_scenarios
    target = scenarios[0]
    reporters = [AnnotatorFactory(), AnnotatorFactory()]
    for annotator in reporters:
        report(annotator, page_of(annotator), target)
    researcher = UserFactory()
    assert services.reported_scenarios_keep(scenario_ids=[target.pk], by=researcher) == 1
    target.refresh_from_db()
    assert (target.review_status, target.is_retired, target.reviewed_by) == ("accepted", False, researcher)
    assert set(ItemReport.objects.values_list("decision", "decided_by")) == {("kept", researcher.pk)}
    assert target in selectors.open_scenarios_for(AnnotatorFactory())
    # A new report after the decision counts afresh: one is not enough to hold it again.
    late = AnnotatorFactory()
    report(late, page_of(late), target)
    target.refresh_from_db()
    assert target.review_status == Scenario.Review.ACCEPTED


def test_retiring_a_reported_scenario_keeps_its_judgments(context_with_scenarios):
    context, scenarios = context_with_scenarios
    target = scenarios[0]
    rater = AnnotatorFactory()
    rate_page(rater, context, {s.pk: (3, "text") for s in scenarios})
    for annotator in (AnnotatorFactory(), AnnotatorFactory()):
        report(annotator, page_of(annotator), target)
    assert services.reported_scenarios_retire(scenario_ids=[target.pk], by=UserFactory()) == 1
    target.refresh_from_db()
    assert target.is_retired and target.review_status == Scenario.Review.ACCEPTED
    assert set(ItemReport.objects.values_list("decision", flat=True)) == {"retired"}
    assert Judgment.objects.filter(scenario=target).count() == 1
    # "Bring back" on the scenario list puts it in the pool again (it is no longer held).
    services.scenarios_set_retired(scenario_ids=[target.pk], retired=False)
    assert target in selectors.open_scenarios_for(AnnotatorFactory())


def test_reporting_every_scenario_of_a_page_finishes_it_without_judgments(context_with_scenarios):
    _, scenarios = context_with_scenarios
    annotator = AnnotatorFactory()
    assignment = page_of(annotator)
    for scenario in scenarios:
        report(annotator, assignment, scenario, page_comment="the image does not load")
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.COMPLETED and not Judgment.objects.exists()
    assert PageComment.objects.get().text == "the image does not load"
    assert page_of(annotator) is None  # nothing else to do: all three were reported by them


def test_a_reported_canary_is_not_offered_to_its_reporter_again(settings):
    context = make_context()
    make_scenarios(context, 2)
    canary = make_canary(context)
    settings.MORALE_CANARY_RATE = 1.0
    annotator = AnnotatorFactory()
    assignment = page_of(annotator)
    assert canary.pk in {i.scenario_id for i in assignment.items.all()}
    report(annotator, assignment, canary)
    assignment.status = Assignment.Status.EXPIRED
    assignment.save()
    assert canary.pk not in {i.scenario_id for i in page_of(annotator).items.all()}


# --- the page comment ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("at_submit", "stored"),
    [("  two scenarios say the same  ", "two scenarios say the same"), ("", "first thought")],
    ids=["a later text replaces it", "an empty one keeps it"],
)
def test_the_page_comment_is_stored_once_per_page(context_with_scenarios, at_submit, stored):
    _, scenarios = context_with_scenarios
    annotator = AnnotatorFactory()
    assignment = page_of(annotator)
    report(annotator, assignment, scenarios[0], page_comment="first thought")
    submit(annotator, assignment, {s.pk: 3 for s in scenarios[1:]}, comment=at_submit)
    comment = PageComment.objects.get()
    assert (comment.assignment_id, comment.annotator_id, comment.text) == (assignment.pk, annotator.pk, stored)


def test_a_too_long_comment_refuses_the_submit_and_stores_nothing(context_with_scenarios):
    _, scenarios = context_with_scenarios
    annotator = AnnotatorFactory()
    assignment = page_of(annotator)
    with pytest.raises(ValidationError, match="under 1000 characters"):
        submit(annotator, assignment, {s.pk: 3 for s in scenarios}, comment="x" * 1001)
    assert not Judgment.objects.exists() and not PageComment.objects.exists()


# --- written scenarios: pool or review -----------------------------------------------------------
def write_scenario(annotator, context, text):
    rate_page_open = page_of(annotator)
    assert rate_page_open.context_id == context.pk
    items = list(rate_page_open.items.all())
    submit(annotator, rate_page_open, {i.scenario_id: 3 for i in items})
    return services.scenario_add_by_annotator(annotator=annotator, assignment_id=rate_page_open.pk, text=text)


def test_by_default_a_written_scenario_joins_the_pool(context_with_scenarios):
    context, _ = context_with_scenarios
    written = write_scenario(AnnotatorFactory(), context, "asking a stranger to help")
    assert written.review_status == Scenario.Review.ACCEPTED
    assert written in selectors.open_scenarios_for(AnnotatorFactory())


def test_under_review_a_written_scenario_is_scored_but_never_assigned_until_approved(
    context_with_scenarios, settings, django_capture_on_commit_callbacks
):
    settings.MORALE_WRITTEN_SCENARIOS = "review"
    context, _ = context_with_scenarios
    author = AnnotatorFactory()
    with django_capture_on_commit_callbacks() as queued:
        written = write_scenario(author, context, "asking a stranger to help")
    assert written.review_status == Scenario.Review.PENDING
    assert queued, "a held scenario is queued for scoring like any new one"
    other = AnnotatorFactory()
    assert written not in selectors.open_scenarios_for(other)

    researcher = UserFactory()
    assert services.scenarios_approve(scenario_ids=[written.pk], by=researcher) == 1
    written.refresh_from_db()
    assert (written.review_status, written.reviewed_by) == (Scenario.Review.ACCEPTED, researcher)
    assert written in selectors.open_scenarios_for(other)
    assert services.scenarios_approve(scenario_ids=[written.pk], by=researcher) == 0  # idempotent


def test_a_rejected_scenario_keeps_its_reason_and_is_never_assigned(context_with_scenarios, settings):
    settings.MORALE_WRITTEN_SCENARIOS = "review"
    context, seeds = context_with_scenarios
    written = write_scenario(AnnotatorFactory(), context, "something unrelated to the picture")
    with pytest.raises(ValidationError, match="reason"):
        services.scenarios_reject(scenario_ids=[written.pk], by=UserFactory(), reason="   ")
    assert services.scenarios_reject(scenario_ids=[written.pk, seeds[0].pk], by=UserFactory(), reason="unrelated to the image") == 1
    written.refresh_from_db()
    seeds[0].refresh_from_db()
    assert (written.review_status, written.review_note) == ("rejected", "unrelated to the image")
    assert seeds[0].review_status == "accepted"  # only held scenarios are rejected
    assert written not in selectors.open_scenarios_for(AnnotatorFactory())


def test_the_database_refuses_a_rejection_without_reason_and_a_held_seed(context_with_scenarios):
    from django.db import IntegrityError, transaction

    _, seeds = context_with_scenarios
    for values in ({"review_status": "rejected", "review_note": ""}, {"review_status": "pending"}, {"review_status": "gone"}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Scenario.objects.filter(pk=seeds[0].pk).update(**values)


def test_an_unknown_written_scenarios_setting_refuses_to_start(monkeypatch):
    import importlib

    import morale.settings.base as base

    monkeypatch.setenv("MORALE_WRITTEN_SCENARIOS", "maybe")
    with pytest.raises(Exception, match="MORALE_WRITTEN_SCENARIOS"):
        importlib.reload(base)
    monkeypatch.delenv("MORALE_WRITTEN_SCENARIOS")
    importlib.reload(base)


def test_held_and_rejected_scenarios_do_not_count_towards_the_collection_targets(context_with_scenarios):
    from annotation.research import process

    context, seeds = context_with_scenarios
    author = AnnotatorFactory()
    held, rejected = (
        services.scenario_create(context=context, text=text, origin="annotator", author=author, review_status="pending")
        for text in ("held one", "rejected one")
    )
    services.scenarios_reject(scenario_ids=[rejected.pk], by=UserFactory(), reason="off topic")
    assert process.collection_progress()["scenarios"]["total"] == len(seeds)
    services.scenarios_approve(scenario_ids=[held.pk], by=UserFactory())
    assert process.collection_progress()["scenarios"]["total"] == len(seeds) + 1


# --- the rating page over HTTP ---------------------------------------------------------------------
@pytest.fixture
def annotator_client(client):
    annotator = AnnotatorFactory()
    client.force_login(annotator.user)
    client.annotator = annotator
    return client


def test_report_and_skip_keeps_what_was_typed_and_the_page_submits_without_it(annotator_client, context_with_scenarios):
    client = annotator_client
    url = open_page(client)
    page = client.get(url).content.decode()
    assert page.count("Report this item") == 3 and 'name="page_comment"' in page
    ids, data = form_for(page, score=4, modality="both")
    reported, kept = ids[0], ids[1:]
    del data[f"score-{kept[-1]}"]  # not rated yet when the report is sent
    data.update({"report": reported, f"report-reason-{reported}": "broken_image", "page_comment": "grey image"})
    assignment_id = int(re.search(r"/annotate/(\d+)/", url).group(1))

    response = client.post(reverse("annotation:report", args=[assignment_id]), data)
    assert response.status_code == 200
    shown = response.content.decode()
    assert "That scenario is skipped" in shown
    assert f'name="score-{reported}"' not in shown and "You reported this item (broken image)" in shown
    assert f'name="score-{kept[0]}" value="4" required checked' in shown  # typed answers are still there
    assert "grey image" in shown
    assert ItemReport.objects.get().scenario_id == int(reported)

    _, again = form_for(shown, score=2, modality="text")
    again["page_comment"] = "grey image"
    response = client.post(url, again)
    assert response.status_code == 302
    assert sorted(Judgment.objects.values_list("scenario_id", flat=True)) == sorted(int(k) for k in kept)
    assert PageComment.objects.get().text == "grey image"


def test_a_report_without_a_reason_says_so_beside_the_item_and_keeps_the_answers(annotator_client, context_with_scenarios):
    client = annotator_client
    url = open_page(client)
    ids, data = form_for(client.get(url).content.decode(), score=5)
    data["report"] = ids[0]
    response = client.post(url.rstrip("/") + "/report/", data)
    assert response.status_code == 400
    shown = response.content.decode()
    assert f'id="s{ids[0]}-report-error"' in shown and "choose what is wrong" in shown
    assert f'name="score-{ids[1]}" value="5" required checked' in shown
    assert not ItemReport.objects.exists()


def test_reporting_the_last_item_goes_on_to_the_next_image(annotator_client):
    context = make_context()
    only = make_scenarios(context, 1)[0]
    client = annotator_client
    url = open_page(client)
    _, data = form_for(client.get(url).content.decode())
    data.update({"report": only.pk, f"report-reason-{only.pk}": "offensive"})
    response = client.post(url + "report/", data)
    assert response.status_code == 302 and response.url == reverse("annotation:next")
    assert Assignment.objects.get().status == Assignment.Status.COMPLETED


def test_report_urls_refuse_other_pages_other_scenarios_and_get(annotator_client, context_with_scenarios):
    client = annotator_client
    url = open_page(client)
    ids, data = form_for(client.get(url).content.decode())
    assert client.get(url + "report/").status_code == 405
    elsewhere = make_scenarios(make_context("elsewhere"), 1)[0]
    data.update({"report": elsewhere.pk, f"report-reason-{elsewhere.pk}": "nonsense"})
    assert client.post(url + "report/", data).status_code == 404
    data["report"] = "not-a-number"
    assert client.post(url + "report/", data).status_code == 400
    # Someone else's page is a 404, like a page that does not exist.
    data.update({"report": ids[0], f"report-reason-{ids[0]}": "nonsense"})
    client.force_login(AnnotatorFactory().user)
    assert client.post(url + "report/", data).status_code == 404
    assert not ItemReport.objects.exists()


def test_the_add_page_says_a_held_scenario_waits_for_a_researcher(annotator_client, settings, context_with_scenarios):
    settings.MORALE_WRITTEN_SCENARIOS = "review"
    client = annotator_client
    assignment = page_of(client.annotator)
    submit(client.annotator, assignment, {i.scenario_id: 3 for i in assignment.items.all()})
    response = client.post(reverse("annotation:add", args=[assignment.pk]), {"text": "waving to the driver"}, follow=True)
    assert "a researcher will look at your scenario" in response.content.decode()
    assert Scenario.objects.get(text="waving to the driver").review_status == Scenario.Review.PENDING
