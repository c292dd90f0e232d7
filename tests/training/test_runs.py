"""Training runs end to end: export -> features -> train -> candidate -> gate -> promotion,
and every way a run can fail without touching the current version."""

import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from annotation import services as annotation_services
from annotation.models import Scenario
from annotation.dataset.export.service import dataset_export_create
from modelloop.models import ModelVersion
from morale import jobs
from training import services, tasks
from training.models import TrainingRun
from tests.factories import AnnotatorFactory, current_version, make_context, predict

pytestmark = pytest.mark.django_db

KIND = ["helping {} carefully", "comforting {} gently", "protecting {} from harm"]
CRUEL = ["hurting {} on purpose", "stealing from {}", "mocking {} cruelly"]


@pytest.fixture
def judged(settings):
    """20 contexts x 4 scenarios, each judged by 3 annotators: kind actions 4-5, cruel 1-2."""
    settings.MORALE_EXPORT_TEST_FRACTION = 0.3
    settings.MORALE_CANARY_RATE = 0.0
    scenarios = {}
    for n in range(20):
        context = make_context(f"a person number {n} in a room")
        texts = [KIND[n % 3].format("the child"), KIND[(n + 1) % 3].format("a friend"),
                 CRUEL[n % 3].format("the child"), CRUEL[(n + 1) % 3].format("a friend")]
        for text in texts:
            scenarios[annotation_services.scenario_create(context=context, text=text).pk] = text
    for a in range(3):
        annotator = AnnotatorFactory()
        while (page := annotation_services.assignment_get_or_create(annotator=annotator)) is not None:
            ratings = []
            for item in page.items.all():
                kind = any(item.scenario.text.startswith(k.split(" ")[0]) for k in KIND)
                ratings.append(annotation_services.RatingInput(item.scenario_id, (5 - a % 2) if kind else (1 + a % 2), "text"))
            annotation_services.assignment_submit_ratings(
                annotator=annotator, assignment_id=page.pk, ratings=ratings, page_token=uuid.uuid4()
            )
            annotation_services.assignment_complete(annotator=annotator, assignment_id=page.pk)
    return scenarios


def run_training(**config):
    run = services.training_run_queue(config={"epochs": 30, "lr": 3e-3, **config})
    return services.training_run_execute(run_id=run.pk)


def test_a_run_trains_a_calibrated_head_and_promotes_it_over_a_worse_current_version(judged):
    baseline = current_version()
    for sid, text in judged.items():  # the current model has it backwards
        predict(Scenario.objects.get(pk=sid), 1.5 if text.split(" ")[0] in ("helping", "comforting", "protecting") else 4.5)
    run = run_training()
    assert run.status == "succeeded", run.error
    assert run.promoted and "promoted over" in run.gate_reason
    version = ModelVersion.objects.get(is_current=True)
    assert version == run.model_version and version != baseline
    assert version.scorer == "efficientnet-minilm-mlp" and version.head_weights
    assert run.metrics["test"]["ndcg@5"] > 0.9
    assert [row["epoch"] for row in run.metrics["history"]] == list(range(1, 31))
    assert run.progress == 1.0 and "epoch 30" in run.log


def test_a_worse_candidate_stays_a_candidate_with_the_reason(judged):
    baseline = current_version()
    for sid, text in judged.items():  # the current model is already perfect
        kind = text.split(" ")[0] in ("helping", "comforting", "protecting")
        predict(Scenario.objects.get(pk=sid), 4.5 if kind else 1.5)
    run = run_training(epochs=1, lr=1e-5)  # barely trained: worse than perfect
    assert run.status == "succeeded", run.error
    assert not run.promoted and "not promoted" in run.gate_reason
    assert ModelVersion.objects.get(is_current=True) == baseline


def test_without_current_scores_the_candidate_is_not_promoted(judged):
    baseline = current_version()
    run = run_training(epochs=2)
    assert run.status == "succeeded" and not run.promoted
    assert "no scores on the test split" in run.gate_reason
    assert ModelVersion.objects.get(is_current=True) == baseline


def test_empty_export_fails_the_run_and_keeps_the_current_version():
    baseline = current_version()
    run = run_training()
    assert run.status == "failed" and "no list of two or more scenarios" in run.error
    assert ModelVersion.objects.get(is_current=True) == baseline and run.model_version is None


def test_missing_image_file_fails_the_run_with_its_name(judged):
    baseline = current_version()
    victim = Scenario.objects.first().context
    victim.image.storage.delete(victim.image.name)
    run = run_training()
    assert run.status == "failed" and "have no features" in run.error and "not found" in run.error.lower()
    assert ModelVersion.objects.get(is_current=True) == baseline


def test_lists_of_one_are_left_out_and_only_them_is_an_error(settings):
    settings.MORALE_EXPORT_TEST_FRACTION = 0.3
    for n in range(3):
        context = make_context()
        annotation_services.scenario_create(context=context, text=f"only action {n}")
    annotator = AnnotatorFactory()
    while (page := annotation_services.assignment_get_or_create(annotator=annotator)) is not None:
        annotation_services.assignment_submit_ratings(
            annotator=annotator, assignment_id=page.pk, page_token=uuid.uuid4(),
            ratings=[annotation_services.RatingInput(i.scenario_id, 3, "text") for i in page.items.all()],
        )
        annotation_services.assignment_complete(annotator=annotator, assignment_id=page.pk)
    run = run_training()
    assert run.status == "failed" and "3 list(s) of one left out" in run.error


def test_a_crash_mid_training_fails_the_run_and_keeps_the_current_version(judged, monkeypatch):
    baseline = current_version()

    def crash(*args, **kwargs):
        raise RuntimeError("worker lost its GPU")

    monkeypatch.setattr(services, "train_head", crash)
    run = run_training()
    assert run.status == "failed" and "worker lost its GPU" in run.error
    assert ModelVersion.objects.get(is_current=True) == baseline


def test_a_corrupt_saved_head_fails_the_run(judged, monkeypatch):
    baseline = current_version()
    monkeypatch.setattr(services, "save_head", lambda head, path: open(path, "wb").write(b"not safetensors"))
    run = run_training(epochs=1)
    assert run.status == "failed" and "safetensors" in run.error
    assert ModelVersion.objects.get(is_current=True) == baseline


def test_runs_never_overlap():
    services.training_run_queue()
    with pytest.raises(services.TrainingRunInProgress):
        services.training_run_queue()
    assert tasks.retrain.run() is None  # the scheduled task skips, it does not queue a second run


def test_a_run_whose_worker_died_stops_holding_the_lock():
    stale = services.training_run_queue()
    TrainingRun.objects.filter(pk=stale.pk).update(
        status="running", heartbeat_at=timezone.now() - timedelta(hours=5), started_at=timezone.now() - timedelta(hours=5)
    )
    fresh = services.training_run_queue()
    stale.refresh_from_db()
    assert stale.status == "failed" and "worker was lost" in stale.error
    assert fresh.status == "queued"


def test_bad_config_is_refused_before_anything_is_queued():
    with pytest.raises(ValueError):
        services.training_run_queue(config={"loss": "hinge"})
    with pytest.raises(TypeError):
        services.training_run_queue(config={"learning_rate": 1})
    assert not TrainingRun.objects.exists()


def test_the_retrain_job_is_scheduled_in_celery_beat():
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="training.retrain")
    assert task.enabled and task.interval.every == 24 * 3600


def test_train_head_command_reports_the_run(judged, capsys):
    call_command("train_head", "--epochs", "3", "--lr", "3e-3", verbosity=0)
    out = capsys.readouterr().out
    assert "produced head-listmle-run" in out and ("Promoted" in out or "Kept as a candidate" in out)


def test_evaluate_model_prints_the_three_losses_side_by_side(judged, capsys):
    export = dataset_export_create(fmt="jsonl")
    call_command("evaluate_model", "--export", str(export.pk), "--epochs", "3", "--lr", "3e-3")
    out = capsys.readouterr().out
    for label in ("ListMLE head", "BPO head", "BCE head", "random scores", "NDCG@5", "MRR", "Unsafe Rate",
                  "AUC-Safety", "Kendall tau", "MAE", "ECE", "Grounding", "Per-scenario predictions: "):
        assert label in out


def test_commands_give_clear_errors():
    with pytest.raises(CommandError, match="no dataset export #999"):
        call_command("train_head", "--export", "999")


def test_admin_start_button_queues_a_run_for_a_worker(client, django_user_model, django_capture_on_commit_callbacks, monkeypatch):
    from django.urls import reverse

    sent = []
    monkeypatch.setattr(tasks.execute_run, "apply_async", lambda args, **_: sent.append(args))
    client.force_login(django_user_model.objects.create_superuser("staff", "s@example.org", "pw-for-tests"))
    assert client.get(reverse("admin:training_trainingrun_changelist")).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:training_trainingrun_start"))
    assert response.status_code == 302
    run = TrainingRun.objects.get()
    assert run.status == "queued" and run.triggered_by == "admin" and sent == [[run.pk]]


def test_admin_start_with_the_broker_down_fails_the_run_instead_of_holding_the_lock(
    client, django_user_model, django_capture_on_commit_callbacks, monkeypatch
):
    from django.urls import reverse
    from kombu.exceptions import OperationalError

    def down(*args, **kwargs):
        raise OperationalError("Connection refused")

    monkeypatch.setattr(tasks.execute_run, "apply_async", down)
    client.force_login(django_user_model.objects.create_superuser("staff", "s@example.org", "pw-for-tests"))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("admin:training_trainingrun_start"))
    run = TrainingRun.objects.get()
    assert run.status == "failed" and "broker" in run.error
    services.training_run_queue()  # the lock is free again


def test_undefined_metrics_are_stored_as_null_on_every_database():
    # A metric undefined on every test list (e.g. Kendall tau when the model gives one list
    # constant scores) is NaN in memory; PostgreSQL's jsonb refuses NaN, so it is stored as null.
    run = jobs.claim(services.TRAINING_JOB, services.training_run_queue().pk)  # a worker's run
    nan = float("nan")
    services._update(run, metrics={"test": {"kendall_tau_b": nan, "ndcg@5": 0.9}, "history": [{"ece": float("inf")}]})
    stored = TrainingRun.objects.get(pk=run.pk).metrics
    assert stored == {"test": {"kendall_tau_b": None, "ndcg@5": 0.9}, "history": [{"ece": None}]}


def test_a_run_reports_what_annotators_see_warns_about_a_small_test_split_and_writes_predictions(judged):
    import csv

    run = run_training(epochs=2)
    assert run.status == "succeeded", run.error
    test = run.metrics["test"]
    for key in ("mae", "ece", "grounding_share", "n_grounding_judgments"):
        assert test[key] is not None, key
    assert test["n_grounding_judgments"] == 3 * test["n_items"]  # three initial judgments per scenario
    before = run.metrics["test_before_calibration"]
    assert all(before[key] == test[key] for key in ("ndcg@5", "mrr", "kendall_tau_b"))
    assert any("fewer than 20" in w for w in run.metrics["warnings"]) and "fewer than 20" in run.log
    rows = list(csv.DictReader(open(run.metrics["predictions_csv"])))
    assert len(rows) == test["n_items"] and {"raw_score", "deployed_score", "context_id"} <= set(rows[0])
    assert run.model_version.metrics["test"]["mae"] == test["mae"]


def test_a_flat_calibration_fails_the_run_and_promotes_nothing(judged, monkeypatch):
    from training import calibration

    baseline = current_version()
    monkeypatch.setattr(calibration, "SLOPE_FLOOR", 1e9)  # every fit is "flat"
    run = run_training(epochs=2)
    assert run.status == "failed" and "CalibrationError" in run.error and "flat" in run.error
    assert ModelVersion.objects.get(is_current=True) == baseline and run.model_version is None


def test_a_candidate_with_worse_absolute_scores_is_not_promoted_whatever_its_ranking(judged, settings):
    settings.MORALE_GATE_NDCG_TOLERANCE = settings.MORALE_GATE_UNSAFE_TOLERANCE = 1.0  # ranking: anything goes
    baseline = current_version()
    for sid, text in judged.items():  # the current model's scores are the humans' own means
        kind = text.split(" ")[0] in ("helping", "comforting", "protecting")
        predict(Scenario.objects.get(pk=sid), 4.5 if kind else 1.5)
    run = run_training(epochs=1, lr=1e-5)  # barely trained: scores near 3
    assert run.status == "succeeded", run.error
    assert not run.promoted and "MAE" in run.gate_reason and "above the current" in run.gate_reason
    assert ModelVersion.objects.get(is_current=True) == baseline


def test_evaluate_model_cross_validates_by_list_with_spread_and_predictions(judged, capsys, tmp_path):
    import csv

    from modelloop.models import Prediction

    for sid in judged:  # the current version has scored every scenario
        if not Prediction.objects.filter(model_version=current_version(), scenario_id=sid).exists():
            predict(Scenario.objects.get(pk=sid), 3.0)
    export = dataset_export_create(fmt="jsonl")
    out_csv = tmp_path / "predictions.csv"
    call_command("evaluate_model", "--export", str(export.pk), "--epochs", "1", "--lr", "3e-3", "--folds", "3",
                 "--seeds", "0,1", "--predictions", str(out_csv))
    out = capsys.readouterr().out
    assert "20 lists (80 scenarios), 3-fold cross-validation by list; seeds 0, 1" in out
    for label in ("ListMLE head", "BPO head", "BCE head", "random scores", "current: ", "MAE", "Grounding", "±", "~"):
        assert label in out, label
    assert "fewer than 20" in out and f"Per-scenario predictions: {out_csv}" in out
    rows = list(csv.DictReader(out_csv.open()))
    folds_of = {}
    for row in rows:
        folds_of.setdefault(row["context_id"], set()).add(row["fold"])
    assert len(folds_of) == 20 and all(len(f) == 1 for f in folds_of.values())  # contexts never straddle folds


def test_evaluate_model_refuses_more_folds_than_lists(judged):
    export = dataset_export_create(fmt="jsonl")
    with pytest.raises(CommandError, match=r"20 list\(s\) \(20 context\(s\)\): too few for 25 folds"):
        call_command("evaluate_model", "--export", str(export.pk), "--folds", "25")
    with pytest.raises(CommandError, match="--seeds"):
        call_command("evaluate_model", "--export", str(export.pk), "--seeds", "a,b")
