"""Judgments written straight to the database (no pages, no scoring) for the tests of the
researchers' figures, and Krippendorff's (2011) worked example as such judgments."""

import math
import random
import uuid

from django.utils import timezone

from annotation import services
from annotation.models import Assignment, Context, Judgment
from tests.factories import AnnotatorFactory, current_version, make_context

NAN = float("nan")
# Krippendorff (2011), section E: 4 observers x 12 units, values 1-5, "." missing.
K2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]


def page_for(annotator, context):
    return Assignment.objects.create(
        annotator=annotator, context=context, status=Assignment.Status.COMPLETED, expires_at=timezone.now()
    )


def judge(annotator, scenario, score, modality="text", *, page=None, model_score=None, version=None, seconds=10.0):
    return Judgment.objects.create(
        annotator=annotator,
        scenario=scenario,
        assignment=page or page_for(annotator, scenario.context),
        score=score,
        modality=modality,
        model_version=(version or current_version()) if model_score is not None else None,
        model_score=model_score,
        delta=abs(score - model_score) if model_score is not None else None,
        canary_passed=scenario.canary_accepts(score) if scenario.is_canary else None,
        seconds_spent=seconds,
        client_token=uuid.uuid4(),
    )


def reconfirm(initial, score, modality=None, model_score=None):
    return Judgment.objects.create(
        annotator=initial.annotator,
        scenario=initial.scenario,
        assignment=initial.assignment,
        score=score,
        modality=modality or initial.modality,
        phase=Judgment.Phase.RECONFIRMED,
        revises=initial,
        model_score=model_score if model_score is not None else initial.model_score,
        model_version=initial.model_version,
        client_token=uuid.uuid4(),
    )


def scenario_in(context, k, label=None):
    return services.scenario_create(context=context, text=f"action {k} in {context.setting}", text_only_label=label)


def rated(matrix, *, labels=None, per_context=3, batch=None):
    """matrix[i][u] = (score, modality) or None: annotator i on unit u. Returns (scenarios, annotators)."""
    n_units = len(matrix[0])
    scenarios = []
    for start in range(0, n_units, per_context):
        context = make_context()
        if batch is not None:
            Context.objects.filter(pk=context.pk).update(import_batch=batch)
        for u in range(start, min(n_units, start + per_context)):
            scenarios.append(scenario_in(context, u, None if labels is None else labels[u]))
    annotators = [AnnotatorFactory() for _ in matrix]
    for annotator, row in zip(annotators, matrix):
        for scenario, cell in zip(scenarios, row):
            if cell is not None:
                judge(annotator, scenario, *cell)
    return scenarios, annotators


def units_of(matrix, index):
    return [[row[u][index] for row in matrix if row[u] is not None] for u in range(len(matrix[0]))]


def k2011_matrix(modalities=("text", "image", "both")):
    rng = random.Random(3)
    return [
        [None if math.isnan(v) else (int(v), rng.choice(modalities)) for v in row] for row in K2011
    ]
