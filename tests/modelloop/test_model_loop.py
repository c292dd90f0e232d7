"""Model versions, predictions, queueing and the sweeper (scores chosen by the tests)."""

import uuid

import pytest
from django.db import IntegrityError, transaction

from annotation import services as annotation_services
from annotation.models import Judgment
from modelloop import selectors, services, tasks
from modelloop.models import ModelVersion, Prediction
from modelloop.scoring import ScoringResult
from tests.factories import AnnotatorFactory, current_version, make_context, make_scenarios

pytestmark = pytest.mark.django_db


def test_a_fresh_database_has_exactly_one_current_version_the_labelled_baseline():
    version = selectors.model_version_current()
    assert ModelVersion.objects.filter(is_current=True).count() == 1
    # the image-aware prior (issue 13) replaced the text-only baseline of migration 0002
    assert version.scorer == "image-aware-prior" and version.name == "image-aware-prior-v1"
    assert "baseline" in version.description and "ImageNet classes" in version.description
    assert not ModelVersion.objects.get(name="zero-shot-text-baseline-v1").is_current


def test_database_refuses_a_second_current_version():
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(name="second", scorer="zero-shot-text-baseline", is_current=True)


def test_promotion_switches_current_atomically_and_queues_rescoring(django_capture_on_commit_callbacks, monkeypatch):
    scenarios = make_scenarios(make_context(), 3)
    sent = []
    monkeypatch.setattr(tasks.score_scenarios, "apply_async", lambda kwargs, **_: sent.append(kwargs))
    new = services.model_version_create(name="v2", scorer="zero-shot-text-baseline", config={"temperature": 4.0})
    old = current_version()
    with django_capture_on_commit_callbacks(execute=True):
        services.model_version_promote(model_version=new)
    assert list(ModelVersion.objects.filter(is_current=True)) == [new]
    old.refresh_from_db()
    assert not old.is_current
    assert sent and sent[0]["model_version_id"] == new.pk
    assert sorted(sent[0]["scenario_ids"]) == sorted(s.pk for s in scenarios)


def test_unknown_scorer_is_refused():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="Unknown scorer"):
        services.model_version_create(name="bad", scorer="gpt-17")


def test_storing_predictions_twice_keeps_one_row_per_version_and_scenario():
    scenario = make_scenarios(make_context(), 1)[0]
    version = current_version()
    results = [ScoringResult(scenario.pk, 3.3)]
    services.predictions_store(model_version=version, results=results)
    services.predictions_store(model_version=version, results=[ScoringResult(scenario.pk, 1.1)])
    assert list(Prediction.objects.values_list("score", flat=True)) == [3.3]


def test_failed_pairs_are_stored_with_their_reason():
    scenario = make_scenarios(make_context(), 1)[0]
    services.predictions_store(model_version=current_version(), results=[ScoringResult(scenario.pk, None, "image is truncated")])
    prediction = Prediction.objects.get()
    assert prediction.status == "failed" and prediction.score is None and "truncated" in prediction.error


def test_new_scenario_is_queued_for_scoring_after_commit(django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.score_scenarios, "apply_async", lambda kwargs, **_: sent.append(kwargs))
    context = make_context()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        scenario = annotation_services.scenario_create(context=context, text="waving hello")
    assert sent == []  # nothing is sent before the transaction commits
    for callback in callbacks:
        callback()
    assert sent == [{"scenario_ids": [scenario.pk], "model_version_id": None}]


def test_broker_down_at_submit_still_stores_the_judgment(django_capture_on_commit_callbacks, monkeypatch, settings):
    """With the broker unreachable the submit succeeds; the sweeper queues scoring later."""
    from kombu.exceptions import OperationalError

    def broker_down(*args, **kwargs):
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(tasks.score_scenarios, "apply_async", broker_down)
    make_scenarios(make_context(), 3)
    annotator = AnnotatorFactory()
    assignment = annotation_services.assignment_get_or_create(annotator=annotator)
    with django_capture_on_commit_callbacks(execute=True):
        annotation_services.assignment_submit_ratings(
            annotator=annotator,
            assignment_id=assignment.pk,
            ratings=[annotation_services.RatingInput(i.scenario_id, 2, "image") for i in assignment.items.all()],
            page_token=uuid.uuid4(),
        )
    assert Judgment.objects.filter(annotator=annotator).count() == 3
    sent = []
    monkeypatch.setattr(tasks.score_scenarios, "apply_async", lambda kwargs, **_: sent.append(kwargs))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep_unscored() == 3
    assert sorted(sent[0]["scenario_ids"]) == sorted(i.scenario_id for i in assignment.items.all())


def test_sweeper_skips_what_is_already_scored_or_failed(django_capture_on_commit_callbacks, monkeypatch):
    scenarios = make_scenarios(make_context(), 3)
    version = current_version()
    services.predictions_store(
        model_version=version, results=[ScoringResult(scenarios[0].pk, 2.0), ScoringResult(scenarios[1].pk, None, "bad image")]
    )
    sent = []
    monkeypatch.setattr(tasks.score_scenarios, "apply_async", lambda kwargs, **_: sent.append(kwargs))
    with django_capture_on_commit_callbacks(execute=True):
        tasks.sweep_unscored()
    assert sent == [{"scenario_ids": [scenarios[2].pk], "model_version_id": version.pk}]


def test_score_task_scores_with_the_real_baseline_and_is_idempotent():
    context = make_context("a child crossing a busy street")
    kind = annotation_services.scenario_create(context=context, text="holding the child's hand to cross safely")
    cruel = annotation_services.scenario_create(context=context, text="pushing the child into the traffic")
    ids = [kind.pk, cruel.pk]
    assert tasks.score_scenarios.run(scenario_ids=ids) == 2
    assert tasks.score_scenarios.run(scenario_ids=ids) == 0  # redelivered: nothing new
    scores = dict(Prediction.objects.values_list("scenario_id", "score"))
    assert all(1 <= s <= 5 for s in scores.values())
    assert scores[kind.pk] > scores[cruel.pk]


def test_score_task_for_a_deleted_version_does_nothing():
    scenario = make_scenarios(make_context(), 1)[0]
    assert tasks.score_scenarios.run(scenario_ids=[scenario.pk], model_version_id=987654) == 0
    assert not Prediction.objects.exists()
