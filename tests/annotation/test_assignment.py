"""Assignment: capacity, no self- or repeat-rating, least-judged first, expiry, canaries."""

import random
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import services
from annotation.models import Assignment, Judgment
from tests.factories import AnnotatorFactory, make_canary, make_context, make_scenarios

pytestmark = pytest.mark.django_db


def rate_all(annotator, assignment, score=3, modality="text"):
    return services.assignment_submit_ratings(
        annotator=annotator,
        assignment_id=assignment.pk,
        ratings=[services.RatingInput(i.scenario_id, score, modality) for i in assignment.items.all()],
        page_token=uuid.uuid4(),
    )


def finish(annotator, assignment):
    rate_all(annotator, assignment)
    services.assignment_complete(annotator=annotator, assignment_id=assignment.pk)


def test_each_scenario_gets_exactly_three_judgments_then_nobody_more():
    context = make_context()
    scenarios = make_scenarios(context, 4)
    annotators = [AnnotatorFactory() for _ in range(5)]
    for annotator in annotators[:3]:
        finish(annotator, services.assignment_get_or_create(annotator=annotator))
    for s in scenarios:
        assert Judgment.objects.filter(scenario=s, phase="initial").count() == 3
    assert services.assignment_get_or_create(annotator=annotators[3]) is None


def test_nobody_rates_a_scenario_twice():
    context = make_context()
    make_scenarios(context, 3)
    annotator = AnnotatorFactory()
    finish(annotator, services.assignment_get_or_create(annotator=annotator))
    assert services.assignment_get_or_create(annotator=annotator) is None


def test_nobody_is_given_a_scenario_they_wrote():
    context = make_context()
    author = AnnotatorFactory()
    written = services.scenario_create(context=context, text="my own action", origin="annotator", author=author)
    make_scenarios(context, 2)
    assignment = services.assignment_get_or_create(annotator=author)
    assert written.pk not in {i.scenario_id for i in assignment.items.all()}
    assert assignment.items.count() == 2


def test_least_judged_context_goes_first():
    busy, quiet = make_context("busy"), make_context("quiet")
    make_scenarios(busy, 3)
    make_scenarios(quiet, 3)
    first = AnnotatorFactory()
    a = services.assignment_get_or_create(annotator=first, rng=random.Random(0))
    finish(first, a)
    judged_context = a.context
    second = AnnotatorFactory()
    b = services.assignment_get_or_create(annotator=second)
    assert b.context != judged_context


def test_ties_are_broken_at_random():
    contexts = [make_context() for _ in range(4)]
    for c in contexts:
        make_scenarios(c, 3)
    chosen = set()
    for _ in range(12):
        annotator = AnnotatorFactory()
        assignment = services.assignment_get_or_create(annotator=annotator)
        chosen.add(assignment.context_id)
        Assignment.objects.filter(pk=assignment.pk).update(status="expired")  # give the slots back
    assert len(chosen) > 1


def test_page_holds_at_most_five_scenarios_in_random_order():
    context = make_context()
    make_scenarios(context, 7)
    orders = set()
    for _ in range(6):
        a = services.assignment_get_or_create(annotator=AnnotatorFactory())
        items = list(a.items.all())
        assert 1 <= len(items) <= 5
        orders.add(tuple(i.scenario_id for i in items))
        Assignment.objects.filter(pk=a.pk).update(status="expired")
    assert len(orders) > 1


def test_open_page_is_returned_again_not_duplicated():
    make_scenarios(make_context(), 3)
    annotator = AnnotatorFactory()
    first = services.assignment_get_or_create(annotator=annotator)
    assert services.assignment_get_or_create(annotator=annotator) == first
    assert Assignment.objects.filter(annotator=annotator).count() == 1


def test_held_slots_count_against_capacity():
    make_scenarios(make_context(), 3)
    holders = [AnnotatorFactory() for _ in range(3)]
    for h in holders:
        assert services.assignment_get_or_create(annotator=h) is not None
    assert services.assignment_get_or_create(annotator=AnnotatorFactory()) is None


def test_abandoned_assignment_expires_back_to_the_pool():
    make_scenarios(make_context(), 3)
    holders = [AnnotatorFactory() for _ in range(3)]
    pages = [services.assignment_get_or_create(annotator=h) for h in holders]
    later = timezone.now() + timedelta(minutes=31)
    assert services.assignments_expire(now=later) == 3
    assert services.assignment_get_or_create(annotator=AnnotatorFactory(), now=later) is not None
    assert all(Assignment.objects.get(pk=p.pk).status == "expired" for p in pages)


def test_expired_page_is_replaced_when_its_annotator_comes_back():
    make_scenarios(make_context(), 3)
    annotator = AnnotatorFactory()
    first = services.assignment_get_or_create(annotator=annotator)
    later = timezone.now() + timedelta(minutes=31)
    second = services.assignment_get_or_create(annotator=annotator, now=later)
    assert second.pk != first.pk
    assert Assignment.objects.get(pk=first.pk).status == "expired"


def test_canaries_are_mixed_in_at_the_configured_rate(settings):
    context = make_context()
    make_scenarios(context, 3)
    canary = make_canary(context)
    settings.MORALE_CANARY_RATE = 1.0
    a = services.assignment_get_or_create(annotator=AnnotatorFactory())
    assert canary.pk in {i.scenario_id for i in a.items.all()}
    settings.MORALE_CANARY_RATE = 0.0
    b = services.assignment_get_or_create(annotator=AnnotatorFactory())
    assert canary.pk not in {i.scenario_id for i in b.items.all()}


def test_canary_judgment_records_pass_or_fail(settings):
    settings.MORALE_CANARY_RATE = 1.0
    context = make_context()
    make_scenarios(context, 2)
    canary = make_canary(context, low=1, high=2)
    annotator = AnnotatorFactory()
    a = services.assignment_get_or_create(annotator=annotator)
    judgments = rate_all(annotator, a, score=4)
    by_scenario = {j.scenario_id: j for j in judgments}
    assert by_scenario[canary.pk].canary_passed is False
    assert all(j.canary_passed is None for sid, j in by_scenario.items() if sid != canary.pk)


def test_paused_annotator_gets_no_work():
    make_scenarios(make_context(), 3)
    annotator = AnnotatorFactory(status="paused")
    with pytest.raises(services.AnnotatorNotActive):
        services.assignment_get_or_create(annotator=annotator)
