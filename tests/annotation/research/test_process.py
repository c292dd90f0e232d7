"""Process figures (annotation.research.process): revision rate, disagreement rate, collection
progress, against hand counts."""

import uuid
from datetime import datetime, timezone as dt_timezone
from unittest import mock

import pytest

from annotation import services
from annotation.research import process
from modelloop.models import ModelVersion
from tests.annotation.research.builders import judge, reconfirm, scenario_in
from tests.factories import AnnotatorFactory, current_version, make_canary, make_context


@pytest.mark.django_db
def test_revision_rates_per_annotator_and_overall():
    context = make_context()
    scenarios = [scenario_in(context, k) for k in range(4)]
    a, b = AnnotatorFactory(), AnnotatorFactory()
    # a: 3 disagreements answered, 1 revised (score), 1 modality change only; 1 agreement
    j = [judge(a, s, 1, "text", model_score=4.0) for s in scenarios[:3]] + [judge(a, scenarios[3], 4, model_score=4.2)]
    reconfirm(j[0], 3)
    reconfirm(j[1], 1, "image")
    reconfirm(j[2], 1)
    # b: 2 disagreements, 1 answered and revised
    k = [judge(b, s, 5, "both", model_score=1.5) for s in scenarios[:2]]
    reconfirm(k[0], 2)
    result = process.revision_rates()
    assert result["overall"] == {
        "checks_offered": 5, "checks_answered": 4, "revised": 2, "modality_changed": 1,
        "rate": 0.5, "modality_rate": 0.25,
    }
    rows = {r["annotator_id"]: r for r in result["per_annotator"]}
    assert rows[a.pk]["rate"] == pytest.approx(1 / 3) and rows[a.pk]["checks_offered"] == 3
    assert rows[b.pk]["rate"] == 1.0 and rows[b.pk]["checks_answered"] == 1 and rows[b.pk]["checks_offered"] == 2
    assert [r["annotator_id"] for r in result["per_annotator"]] == [b.pk, a.pk]  # highest rate first


@pytest.mark.django_db
def test_disagreement_rate_per_day_and_per_model_version(settings):
    settings.MORALE_DISAGREEMENT_THRESHOLD = 1.0
    other = ModelVersion.objects.create(name="head-v2", scorer="efficientnet-minilm-mlp")
    context = make_context()
    scenarios = [scenario_in(context, k) for k in range(6)]
    annotators = [AnnotatorFactory() for _ in range(2)]
    day1 = datetime(2026, 11, 20, 10, tzinfo=dt_timezone.utc)
    day2 = datetime(2026, 11, 21, 23, 30, tzinfo=dt_timezone.utc)
    plan = [  # (day, annotator, scenario, score, model score, version)
        (day1, 0, 0, 1, 2.0, None),  # delta 1.0: disagreement (>=)
        (day1, 0, 1, 3, 3.5, None),
        (day1, 0, 2, 5, None, None),  # no model score: not counted
        (day2, 1, 0, 5, 1.0, other),
        (day2, 1, 1, 4, 4.9, other),
        (day2, 1, 2, 2, 2.0, other),
        (day2, 1, 3, 2, 4.5, None),
    ]
    for day, i, s, score, model, version in plan:
        with mock.patch("django.utils.timezone.now", return_value=day):
            judge(annotators[i], scenarios[s], score, model_score=model, version=version)
    result = process.disagreement_rates()
    assert result["by_day"] == [
        {"day": "2026-11-20", "judgments": 3, "scored": 2, "disagreements": 1, "rate": 0.5},
        {"day": "2026-11-21", "judgments": 4, "scored": 4, "disagreements": 2, "rate": 0.5},
    ]
    by_version = {v["name"]: v for v in result["by_version"]}
    assert by_version["head-v2"] == {"model_version_id": other.pk, "name": "head-v2", "scored": 3, "disagreements": 1, "rate": 1 / 3}
    assert by_version[current_version().name]["scored"] == 3 and by_version[current_version().name]["disagreements"] == 2
    assert result["overall"] == {"scored": 6, "disagreements": 3, "rate": 0.5}


@pytest.mark.django_db
def test_collection_progress_against_targets(settings):
    settings.MORALE_JUDGMENTS_PER_SCENARIO = 2
    small = make_context()
    small_scenarios = [scenario_in(small, k) for k in range(2)]
    big = make_context()
    big_scenarios = [scenario_in(big, k) for k in range(3)]
    make_canary(big)
    retired = scenario_in(big, 9)
    type(retired).objects.filter(pk=retired.pk).update(is_retired=True)
    annotators = [AnnotatorFactory() for _ in range(3)]
    for annotator in annotators[:2]:  # through the product's own pages, so the counters move
        assignment = services.assignment_get_or_create(annotator=annotator)
        while assignment is not None:
            services.assignment_submit_ratings(
                annotator=annotator, assignment_id=assignment.pk, page_token=uuid.uuid4(),
                ratings=[services.RatingInput(i.scenario_id, 3, "text") for i in assignment.items.all()],
            )
            services.assignment_complete(annotator=annotator, assignment_id=assignment.pk)
            assignment = services.assignment_get_or_create(annotator=annotator)
    services.annotator_pause(annotators[2], by=None, reasons="away")
    result = process.collection_progress()
    assert result["scenarios"] == {"total": 5, "done": 5, "share": 1.0}
    assert result["contexts"] == {"total": 2, "done": 2, "share": 1.0}
    assert result["judgments"]["target"] == 10 and result["judgments"]["towards_target"] == 10
    assert result["judgments"]["initial"] == 10
    assert result["annotators"] == {"active": 2, "paused": 1, "screened_out": 0}
    extra = scenario_in(small, 5)
    result = process.collection_progress()
    assert result["scenarios"]["done"] == 5 and result["scenarios"]["total"] == 6
    assert result["contexts"]["done"] == 1
    assert result["judgments"]["share"] == pytest.approx(10 / 12)
    assert extra.judgment_count == 0 and len(small_scenarios) + len(big_scenarios) == 5
