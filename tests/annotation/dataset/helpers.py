"""Helpers of the dataset tests (also used by other test packages): pages rated through the
services, as in the product."""

import uuid
from datetime import timedelta

from annotation import services
from tests.factories import AnnotatorFactory, make_context


def rate_page(annotator, context, scores, seconds_spent=10.0):
    """The annotator gets a page (it must be on `context`) and rates it: scores[scenario.pk] = (score, modality).

    The page is submitted ``seconds_spent`` seconds per scenario after it was created (the
    server measures the time; nothing else sets it)."""
    assignment = services.assignment_get_or_create(annotator=annotator)
    assert assignment.context_id == context.pk
    items = list(assignment.items.all())
    judgments = services.assignment_submit_ratings(
        annotator=annotator,
        assignment_id=assignment.pk,
        ratings=[services.RatingInput(i.scenario_id, *scores[i.scenario_id]) for i in items],
        page_token=uuid.uuid4(),
        now=assignment.created_at + timedelta(seconds=seconds_spent * len(items)),
    )
    services.assignment_complete(annotator=annotator, assignment_id=assignment.pk)
    return {j.scenario_id: j for j in judgments}


def rated_context(columns, setting=None, **context_kwargs):
    """A context with one scenario per entry of `columns`; annotator i rates scenario k with columns[k][i].

    Returns (context, scenarios, annotators, judgments[annotator index][scenario pk]).
    """
    context = make_context(setting, **context_kwargs)
    scenarios = [
        services.scenario_create(context=context, text=f"action {k} in {context.setting}", text_only_label=(k % 3) - 1)
        for k in range(len(columns))
    ]
    n_annotators = len(columns[0])
    annotators = [AnnotatorFactory() for _ in range(n_annotators)]
    judgments = []
    for i, annotator in enumerate(annotators):
        judgments.append(rate_page(annotator, context, {s.pk: columns[k][i] for k, s in enumerate(scenarios)}))
    return context, scenarios, annotators, judgments
