"""A real Celery worker process consumes queue `gpu` and scores new scenarios end to end.

Runs on the embedded default (SQLite file + filesystem broker) in the first pass of
scripts/test.sh and on PostgreSQL + Redis in the second.
"""

import signal
import uuid

import pytest

from annotation import services as annotation_services
from annotation.models import Judgment
from modelloop import tasks
from modelloop.models import Prediction
from tests.factories import AnnotatorFactory, make_context

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_worker_scores_a_new_scenario_and_the_loop_uses_its_score(start_worker, client):
    proc, log = start_worker()
    context = make_context("a child crossing a busy street")
    kind = annotation_services.scenario_create(context=context, text="holding the child's hand to cross safely")
    cruel = annotation_services.scenario_create(context=context, text="pushing the child into the traffic")
    annotation_services.scenario_create(context=context, text="waiting for the green light together")

    wait_for(lambda: Prediction.objects.count() == 3, timeout=120, what="the worker to score 3 scenarios", logs=[log])
    scores = dict(Prediction.objects.values_list("scenario_id", "score"))
    assert scores[kind.pk] > scores[cruel.pk]
    assert proc.poll() is None

    # The scores reach the annotator: the judgment records the model's score and delta.
    annotator = AnnotatorFactory()
    assignment = annotation_services.assignment_get_or_create(annotator=annotator)
    judgments = annotation_services.assignment_submit_ratings(
        annotator=annotator, assignment_id=assignment.pk, page_token=uuid.uuid4(),
        ratings=[annotation_services.RatingInput(i.scenario_id, 5, "both") for i in assignment.items.all()],
    )
    assert all(j.model_score == scores[j.scenario_id] and j.delta == abs(5 - j.model_score) for j in judgments)


def test_a_killed_worker_loses_nothing_and_the_sweeper_recovers(start_worker):
    """SIGKILL while the worker holds a task: no partial rows; the sweeper re-queues and a new worker scores."""
    context = make_context()
    for i in range(3):
        annotation_services.scenario_create(context=context, text=f"an action number {i}")
    proc, log = start_worker()
    wait_for(lambda: "ready" in open(log.name).read(), timeout=60, what="the worker to start", logs=[log])
    proc.send_signal(signal.SIGKILL)  # likely while loading the model for the first task
    proc.wait(timeout=10)
    stored = Prediction.objects.count()
    assert stored in (0, 3)  # one task, one transaction: all or nothing

    _, log2 = start_worker()
    tasks.sweep_unscored.run()  # the periodic sweeper's work, queued after commit (autocommit here)
    wait_for(lambda: Prediction.objects.count() == 3, timeout=120, what="the new worker to score", logs=[log2])
    assert Prediction.objects.values("scenario_id").distinct().count() == 3
    assert Judgment.objects.count() == 0
