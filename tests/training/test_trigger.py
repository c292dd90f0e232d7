"""The retrain trigger (training.trigger, task training.retrain_on_judgments): N new usable
judgments queue one run, never two at once, and a run's export resets the count."""

import uuid

import pytest

from annotation import services as annotation_services
from annotation.models import Annotator, DatasetExport
from annotation.dataset.export.service import dataset_export_create
from training import services, tasks, trigger
from training.models import RetrainPolicy, TrainingRun
from tests.factories import AnnotatorFactory, make_canary, make_context, make_scenarios

pytestmark = pytest.mark.django_db


def judge_pages(annotator, pages=1, score=4):
    """Submit `pages` pages for the annotator; returns the number of judgments stored."""
    stored = 0
    for _ in range(pages):
        page = annotation_services.assignment_get_or_create(annotator=annotator)
        if page is None:
            break
        ratings = [annotation_services.RatingInput(i.scenario_id, score, "text") for i in page.items.all()]
        stored += len(
            annotation_services.assignment_submit_ratings(
                annotator=annotator, assignment_id=page.pk, ratings=ratings, page_token=uuid.uuid4()
            )
        )
        annotation_services.assignment_complete(annotator=annotator, assignment_id=page.pk)
    return stored


@pytest.fixture
def contexts(settings):
    settings.MORALE_SCENARIOS_PER_PAGE = 4
    made = [make_context(f"a kitchen number {n}") for n in range(6)]
    for context in made:
        make_scenarios(context, 4)
    return made


def test_the_threshold_comes_from_the_setting_unless_the_admin_row_says_otherwise(settings):
    settings.MORALE_RETRAIN_AFTER_JUDGMENTS = 40
    assert trigger.retrain_threshold() == 40
    RetrainPolicy.objects.create(pk=RetrainPolicy.SINGLETON_PK, after_judgments=None)
    assert trigger.retrain_threshold() == 40  # empty: the deployment default
    RetrainPolicy.objects.filter(pk=1).update(after_judgments=0)
    assert trigger.retrain_threshold() == 0
    RetrainPolicy.objects.filter(pk=1).update(after_judgments=7)
    assert trigger.retrain_threshold() == 7


def test_the_database_holds_one_policy_row_at_most():
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        RetrainPolicy.objects.create(pk=2, after_judgments=3)


def test_off_by_default_queues_nothing(settings, contexts):
    settings.MORALE_RETRAIN_AFTER_JUDGMENTS = 0
    judge_pages(AnnotatorFactory(), pages=3)
    assert trigger.retrain_if_due() is None
    assert not TrainingRun.objects.exists()


def test_n_usable_judgments_queue_one_run_and_never_a_second_while_it_is_going(settings, contexts):
    settings.MORALE_RETRAIN_AFTER_JUDGMENTS = 8
    annotator = AnnotatorFactory()
    assert judge_pages(annotator, pages=1) == 4
    assert trigger.usable_judgments_since(trigger.last_export_time()) == 4
    assert trigger.retrain_if_due() is None  # 4 < 8
    judge_pages(annotator, pages=1)
    run = trigger.retrain_if_due()
    assert run is not None and run.status == TrainingRun.Status.QUEUED
    assert run.triggered_by == TrainingRun.Trigger.JUDGMENTS
    assert run.config["mode"] == "head"  # head-only: features come from the cache
    judge_pages(AnnotatorFactory(), pages=3)  # more judgments while it is queued ...
    assert trigger.retrain_if_due() is None  # ... still one run
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING)
    assert trigger.retrain_if_due() is None
    assert TrainingRun.objects.count() == 1


def test_a_race_between_two_checks_is_settled_by_the_database(settings, contexts, monkeypatch):
    """Both checks saw no active run; the second's insert is refused by training_run_one_active."""
    settings.MORALE_RETRAIN_AFTER_JUDGMENTS = 4
    judge_pages(AnnotatorFactory(), pages=1)
    first = trigger.retrain_if_due()
    assert first is not None
    # the second check's read happened before the first check's insert
    monkeypatch.setattr(trigger, "run_going", lambda: False)
    assert trigger.retrain_if_due() is None
    monkeypatch.undo()
    assert list(TrainingRun.objects.values_list("pk", flat=True)) == [first.pk]


def test_the_last_runs_export_resets_the_count_and_failed_runs_do_not_loop(settings, contexts):
    settings.MORALE_RETRAIN_AFTER_JUDGMENTS = 8
    annotator = AnnotatorFactory()
    judge_pages(annotator, pages=2)
    run = trigger.retrain_if_due()
    export = dataset_export_create(fmt="jsonl")
    assert export.status == DatasetExport.Status.DONE
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.FAILED, export=export)
    # The failed run read the 8 judgments: they do not trigger again every minute.
    assert trigger.usable_judgments_since(trigger.last_export_time()) == 0
    assert trigger.retrain_if_due() is None
    judge_pages(annotator, pages=2)
    assert trigger.usable_judgments_since(trigger.last_export_time()) == 8
    assert trigger.retrain_if_due() is not None


def test_canaries_screened_out_annotators_and_reconfirmations_do_not_count(settings, contexts):
    settings.MORALE_RETRAIN_AFTER_JUDGMENTS = 100
    settings.MORALE_CANARY_RATE = 1.0
    for context in contexts:
        make_canary(context, 4, 5)
    good, bad = AnnotatorFactory(), AnnotatorFactory()
    stored_good = judge_pages(good, pages=2)
    judge_pages(bad, pages=2)
    Annotator.objects.filter(pk=bad.pk).update(status=Annotator.Status.SCREENED_OUT)
    # every page held one canary, which does not count
    assert trigger.usable_judgments_since(None) == stored_good - 2


def test_the_periodic_task_queues_and_sends_the_run(settings, contexts, monkeypatch):
    settings.MORALE_RETRAIN_AFTER_JUDGMENTS = 4
    sent = []
    monkeypatch.setattr(services, "training_run_send", lambda *, run_id, task: sent.append((run_id, task)))
    assert tasks.retrain_on_judgments() is None
    judge_pages(AnnotatorFactory(), pages=1)
    run_id = tasks.retrain_on_judgments()
    assert run_id is not None and sent == [(run_id, tasks.execute_run)]
    assert tasks.retrain_on_judgments() is None and len(sent) == 1


def test_the_trigger_is_declared_as_a_periodic_job_and_routed_off_the_gpu_queue(settings):
    from celery import current_app

    from morale.periodic import PERIODIC_TASKS

    assert ("training.retrain_on_judgments" in {task for _, task, _ in PERIODIC_TASKS})
    queue = current_app.amqp.router.route({}, "training.retrain_on_judgments")["queue"].name
    assert queue == "default"
    assert current_app.amqp.router.route({}, "training.execute_run")["queue"].name == "gpu"
