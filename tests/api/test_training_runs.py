"""Starting training runs over the API: researchers only, through training.services, one
run at a time, the run handed to a worker once the request's transaction commits."""

import pytest

from annotation.dataset.export import service as export_service
from annotation.dataset import format as dataset_format
from annotation.models import DatasetExport
from training import tasks
from training.models import TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """What reached the broker: the task's apply_async arguments (the broker itself is not under test)."""
    calls = []
    monkeypatch.setattr(tasks.execute_run, "apply_async", lambda args, **_: calls.append(args))
    return calls


def test_a_researcher_starts_a_run_that_a_worker_gets_after_commit(world, as_researcher, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = as_researcher.post("/api/v1/training-runs/", {"config": {"loss": "bpo", "epochs": 2}}, format="json")
    assert response.status_code == 202, response.content
    run = TrainingRun.objects.get(pk=response.json()["id"])
    assert run.status == "queued" and run.export is None
    assert run.config["loss"] == "bpo" and run.config["epochs"] == 2 and run.config["lr"] == 1e-4
    assert len(callbacks) == 1 and sent == [[run.pk]]
    assert response["Location"].endswith(f"/api/v1/training-runs/{run.pk}/")
    assert response.json()["status"] == "queued"


def test_a_run_on_a_chosen_export(world, as_superuser, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = as_superuser.post("/api/v1/training-runs/", {"export": world.export.pk}, format="json")
    assert response.status_code == 202
    assert TrainingRun.objects.get(pk=response.json()["id"]).export == world.export


def test_a_second_run_while_one_is_queued_is_a_409(world, as_researcher, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = as_researcher.post("/api/v1/training-runs/", {}, format="json")
        second = as_researcher.post("/api/v1/training-runs/", {}, format="json")
    assert first.status_code == 202 and second.status_code == 409
    assert "never overlap" in second.json()["detail"]
    assert TrainingRun.objects.count() == 1 and sent == [[first.json()["id"]]]


@pytest.mark.parametrize("who", ["as_alice", "anonymous"])
def test_annotators_and_anonymous_callers_cannot_start_training(world, request, who, sent):
    response = request.getfixturevalue(who).post("/api/v1/training-runs/", {}, format="json")
    assert response.status_code == (403 if who == "as_alice" else 401)
    assert TrainingRun.objects.count() == 0 and sent == []


@pytest.mark.parametrize(
    "data",
    [
        {"config": {"loss": "hinge"}},
        {"config": {"epochs": 0}},
        {"config": {"epochs": "5"}},
        {"config": {"lr": -1.0}},
        {"config": {"learning_rate": 0.1}},
        {"config": {"hidden": True}},
        {"config": "listmle"},
        {"export": 987654},
    ],
)
def test_bad_run_requests_are_400_and_queue_nothing(world, as_researcher, sent, data):
    response = as_researcher.post("/api/v1/training-runs/", data, format="json")
    assert response.status_code == 400, response.content
    assert TrainingRun.objects.count() == 0 and sent == []


def test_a_csv_or_unfinished_export_cannot_be_trained_on(world, as_researcher, sent):
    csv_export = export_service.dataset_export_create(fmt="csv")
    running = DatasetExport.objects.create(format="jsonl", format_version=dataset_format.FORMAT, status="running")
    for export_id in (csv_export.pk, running.pk):
        assert as_researcher.post("/api/v1/training-runs/", {"export": export_id}, format="json").status_code == 400
    assert TrainingRun.objects.count() == 0


def test_with_the_broker_down_the_run_fails_instead_of_holding_the_lock(world, as_researcher, monkeypatch, django_capture_on_commit_callbacks):
    def down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(tasks.execute_run, "apply_async", down)
    with django_capture_on_commit_callbacks(execute=True):
        response = as_researcher.post("/api/v1/training-runs/", {}, format="json")
    run = TrainingRun.objects.get(pk=response.json()["id"])
    assert run.status == "failed" and "broker" in run.error


def test_training_runs_are_filtered_by_status(world, as_researcher, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run_id = as_researcher.post("/api/v1/training-runs/", {}, format="json").json()["id"]
    assert [r["id"] for r in as_researcher.get("/api/v1/training-runs/", {"status": "queued"}).json()["results"]] == [run_id]
    assert as_researcher.get("/api/v1/training-runs/", {"status": "succeeded"}).json()["results"] == []
