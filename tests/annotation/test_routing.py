"""Routing toward the model's doubt (annotation.services.routing): the rule, its
no-starvation bound, its use in assignment, and no over-fill under concurrency."""

import random
from collections import Counter

import pytest

from annotation import services
from annotation.models import AssignmentItem, Context
from annotation.services.routing import ContextCandidate, order_contexts, scenario_uncertainty
from modelloop.models import ModelVersion
from tests.concurrency import run_concurrently
from tests.factories import AnnotatorFactory, current_version, make_context, make_scenarios, predict


def test_uncertainty_is_highest_at_the_safety_threshold_and_when_versions_disagree():
    assert scenario_uncertainty(2.5, None) == 1.0
    assert scenario_uncertainty(1.0, None) == 0.0 and scenario_uncertainty(4.5, None) == 0.0
    assert scenario_uncertainty(3.0, None) > scenario_uncertainty(3.5, None) > 0
    assert scenario_uncertainty(4.5, 2.5) == 1.0  # sure now, but the last version said the opposite
    assert scenario_uncertainty(2.5, 4.5) == 2.0
    assert scenario_uncertainty(None, 3.0) == 1.0  # unscored: nothing known


def test_random_mode_is_least_judged_first_random_among_ties():
    candidates = [ContextCandidate(1, 5, 2.0), ContextCandidate(2, 0), ContextCandidate(3, 0), ContextCandidate(4, 2)]
    orders = {tuple(order_contexts(candidates, mode="random", slack=3, rng=random.Random(s))) for s in range(40)}
    assert orders == {(2, 3, 4, 1), (3, 2, 4, 1)}


def test_disagreement_mode_prefers_the_uncertain_within_the_slack_only():
    candidates = [
        ContextCandidate(1, 0, 0.1), ContextCandidate(2, 2, 1.5), ContextCandidate(3, 3, 0.9),
        ContextCandidate(4, 4, 2.0),  # most uncertain, but 4 > 0 + 3 judgments: not eligible
        ContextCandidate(5, 9, 1.9),
    ]
    assert order_contexts(candidates, mode="disagreement", slack=3, rng=random.Random(0)) == [2, 3, 1, 4, 5]
    # slack 0: least-judged first, the uncertainty breaks ties only
    assert order_contexts(candidates, mode="disagreement", slack=0, rng=random.Random(0)) == [1, 2, 3, 4, 5]


def test_bad_mode_or_slack_is_refused():
    with pytest.raises(ValueError, match="routing mode"):
        order_contexts([], mode="smart", slack=1, rng=random.Random())
    with pytest.raises(ValueError, match="slack"):
        order_contexts([], mode="disagreement", slack=-1, rng=random.Random())


@pytest.mark.parametrize("slack", [0, 2, 5])
def test_no_context_starves_the_spread_stays_within_slack_plus_one_page(slack):
    """An adversarial model: contexts 0-4 always look most uncertain, 5-19 never. Pages of
    5 judgments go to the first context in the order until every context has 30."""
    rng, page, capacity = random.Random(slack), 5, 30
    counts = {cid: 0 for cid in range(20)}
    uncertainty = {cid: (2.0 if cid < 5 else 0.0) for cid in counts}
    first_page_of = {}
    step = 0
    while any(c < capacity for c in counts.values()):
        open_ = [ContextCandidate(cid, n, uncertainty[cid]) for cid, n in counts.items() if n < capacity]
        least = min(c.judgment_count for c in open_)
        chosen = order_contexts(open_, mode="disagreement", slack=slack, rng=rng)[0]
        assert counts[chosen] <= least + slack  # the bound, at every page
        counts[chosen] = min(capacity, counts[chosen] + page)
        first_page_of.setdefault(chosen, step)
        step += 1
        spread = max(c.judgment_count for c in open_) - least
        assert spread <= slack + page
    # a never-uncertain context got its first page within (contexts) x (slack // page + 1) pages
    assert max(first_page_of.values()) <= 20 * (slack // page + 1)


def claim(annotator):
    page = services.assignment_get_or_create(annotator=annotator)
    return page.context_id if page else None


@pytest.mark.django_db
def test_assignment_goes_to_the_context_the_model_is_least_sure_of(settings):
    settings.MORALE_ROUTING, settings.MORALE_ROUTING_SLACK = "disagreement", 3
    settings.MORALE_SCENARIOS_PER_PAGE = 2
    sure = [make_context(f"a sure room {n}") for n in range(4)]
    unsure = make_context("an unsure room")
    for context in sure:
        for s in make_scenarios(context, 2):
            predict(s, 4.8)
    for s in make_scenarios(unsure, 2):
        predict(s, 2.6)
    assert claim(AnnotatorFactory()) == unsure.pk
    # random routing ignores the model
    settings.MORALE_ROUTING = "random"
    got = {claim(AnnotatorFactory()) for _ in range(8)}
    assert len(got) > 1


@pytest.mark.django_db
def test_a_spread_between_versions_counts_and_the_slack_bounds_the_preference(settings):
    settings.MORALE_ROUTING, settings.MORALE_ROUTING_SLACK = "disagreement", 1
    settings.MORALE_SCENARIOS_PER_PAGE = 2
    old = current_version()
    a, b = make_context("room a"), make_context("room b")
    sa, sb = make_scenarios(a, 2), make_scenarios(b, 2)
    new = ModelVersion.objects.create(name="head-new", scorer="efficientnet-minilm-mlp")
    for s in sa + sb:
        predict(s, 4.9, old)
    for s in sa:
        predict(s, 4.9, new)
    for s in sb:
        predict(s, 1.1, new)  # the new version flipped its mind about b: both are sure, b is disputed
    from modelloop import services as modelloop_services

    ModelVersion.objects.filter(pk=old.pk).update(promoted_at=new.created_at)
    modelloop_services.model_version_promote(model_version=new)
    assert claim(AnnotatorFactory()) == b.pk
    # b now has 2 judgments held ... once judged past the slack, a comes first despite b's doubt
    Context.objects.filter(pk=b.pk).update(judgment_count=2)
    assert claim(AnnotatorFactory()) == a.pk


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_disagreement_routing_never_overfills_under_concurrent_requests_on_postgres(settings):
    settings.MORALE_ROUTING, settings.MORALE_ROUTING_SLACK = "disagreement", 3
    settings.MORALE_SCENARIOS_PER_PAGE = 3
    contexts = [make_context(f"a busy room {n}") for n in range(3)]
    for n, context in enumerate(contexts):
        for s in make_scenarios(context, 3):
            predict(s, 2.5 if n == 0 else 4.5)  # everybody wants context 0 first
    annotators = [AnnotatorFactory() for _ in range(16)]
    results = run_concurrently(claim, [(a,) for a in annotators])
    held = Counter(AssignmentItem.objects.values_list("scenario_id", flat=True))
    assert held and max(held.values()) <= settings.MORALE_JUDGMENTS_PER_SCENARIO
    # 9 scenarios x 3 raters = 27 slots = 9 pages of 3; the rest get nothing
    assert sum(1 for r in results if r is not None) == 9
    assert Counter(results)[contexts[0].pk] == 3  # the preferred context filled first, exactly
