"""How scoring behaves on a worker: batch size, CUDA out-of-memory, bad pairs, and a model
directory that is missing (a clear error at start and in the admin, never a crash loop).

Out-of-memory needs a GPU to happen for real; the fake scorers below raise
``torch.cuda.OutOfMemoryError`` for batches larger than 2 instead (a test double for the
GPU condition). The last test starts a real ``celery -A morale worker -Q gpu`` process.
"""

import math
import time

import pytest
import torch
from django.conf import settings as django_settings
from django.urls import reverse

from modelloop import services, tasks
from modelloop.baseline import BASELINE_NAME
from modelloop.models import ModelVersion, Prediction
from modelloop.scoring import FeatureScorer, Scorer, ScoringResult, scorer_registry
from modelloop.scoring.batching import OUT_OF_MEMORY
from modelloop.services import loading
from tests.factories import current_version, make_context, make_scenarios
from tests.integration.conftest import start_worker, wait_for  # noqa: F401 - start_worker is a fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_scorer_cache")]



class SmallGPUScorer(Scorer):
    """Runs out of GPU memory on batches larger than 2; scenario ids in ``config["too_big"]`` never fit."""

    key = "small-gpu"
    description = "test double"
    batches: list[int] = []

    def __init__(self, *, config, head_weights_path=None):
        self.too_big = set(config.get("too_big", []))

    def _check(self, inputs):
        SmallGPUScorer.batches.append(len(inputs))
        if len(inputs) > 2 or any(item.scenario_id in self.too_big for item in inputs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (test double)")

    def score(self, inputs):
        self._check(inputs)
        return [ScoringResult(item.scenario_id, 1.0 + item.scenario_id % 4) for item in inputs]


class SmallGPUFeatureScorer(SmallGPUScorer, FeatureScorer):
    key = "small-gpu-features"
    backbone_ref = "small-gpu-backbone:v1"
    feature_dim = 3

    def features(self, inputs):
        self._check(inputs)
        return torch.tensor([[float(item.scenario_id), 0.0, 1.0] for item in inputs]), [""] * len(inputs)

    def head_scores(self, features):
        return 1.0 + features[:, 0] % 4


class NaNScorer(SmallGPUScorer):
    key = "nan"

    def score(self, inputs):
        return [ScoringResult(item.scenario_id, math.nan) for item in inputs]


@pytest.fixture
def fakes(use_scorers):
    registry = {cls.key: cls for cls in (SmallGPUScorer, SmallGPUFeatureScorer, NaNScorer)}
    registry.update(scorer_registry())
    use_scorers(registry)
    SmallGPUScorer.batches = []
    return registry


def test_score_task_is_late_acked_time_limited_and_retries_only_transient_errors():
    task = tasks.score_scenarios
    assert task.acks_late is True
    assert (task.soft_time_limit, task.time_limit) == (300, 360)
    assert task.autoretry_for == (tasks.OperationalError,)  # never ScoringError: no retry storm
    assert django_settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert django_settings.CELERY_TASK_REJECT_ON_WORKER_LOST is True
    assert django_settings.CELERY_TASK_ROUTES["modelloop.*"] == {"queue": "gpu"}


def test_work_is_queued_and_scored_in_batches_of_the_configured_size(
    fakes, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.MORALE_SCORER_BATCH_SIZE = 2
    ids = [s.pk for s in make_scenarios(make_context(), 5)]
    sent = []
    monkeypatch.setattr(tasks.score_scenarios, "apply_async", lambda kwargs, **_: sent.append(kwargs))
    with django_capture_on_commit_callbacks(execute=True):
        services.scoring_enqueue(scenario_ids=ids)
    assert [len(k["scenario_ids"]) for k in sent] == [2, 2, 1]

    version = services.model_version_create(name="small", scorer="small-gpu")
    assert services.scenarios_score(scenario_ids=ids, model_version=version) == 5  # one big call...
    assert SmallGPUScorer.batches == [2, 2, 1]  # ...scored in batches of the setting


@pytest.mark.parametrize("scorer", ["small-gpu", "small-gpu-features"])
def test_out_of_gpu_memory_halves_the_batch_until_it_fits(fakes, settings, scorer):
    settings.MORALE_SCORER_BATCH_SIZE = 8
    ids = [s.pk for s in make_scenarios(make_context(), 8)]
    version = services.model_version_create(name="small", scorer=scorer)
    assert services.scenarios_score(scenario_ids=ids, model_version=version) == 8
    assert SmallGPUScorer.batches == [8, 4, 2, 2, 4, 2, 2]
    scores = dict(Prediction.objects.filter(model_version=version).values_list("scenario_id", "score"))
    assert scores == {i: 1.0 + i % 4 for i in ids}


def test_a_pair_too_big_even_alone_fails_by_itself(fakes, settings):
    settings.MORALE_SCORER_BATCH_SIZE = 4
    ids = [s.pk for s in make_scenarios(make_context(), 4)]
    version = services.model_version_create(name="small", scorer="small-gpu", config={"too_big": [ids[1]]})
    services.scenarios_score(scenario_ids=ids, model_version=version)
    predictions = {p.scenario_id: p for p in Prediction.objects.filter(model_version=version)}
    assert predictions[ids[1]].status == "failed" and predictions[ids[1]].error == OUT_OF_MEMORY
    assert all(predictions[i].status == "ok" for i in ids if i != ids[1])


def test_a_non_finite_score_is_stored_as_a_failure(fakes):
    scenario = make_scenarios(make_context(), 1)[0]
    version = services.model_version_create(name="nan", scorer="nan")
    services.scenarios_score(scenario_ids=[scenario.pk], model_version=version)
    prediction = Prediction.objects.get(model_version=version)
    assert prediction.status == "failed" and "non-finite" in prediction.error


def test_a_missing_model_directory_is_reported_not_crashed_on(
    tmp_path, monkeypatch, django_capture_on_commit_callbacks, admin_client, caplog
):
    make_scenarios(make_context(), 3)
    missing = tmp_path / "models" / "Qwen2-VL-7B-Instruct"
    version = services.model_version_create(
        name="qwen-7b-zero-shot", scorer="hf-vlm-zero-shot", config={"backbone_path": str(missing)}
    )
    sent = []
    monkeypatch.setattr(tasks.score_scenarios, "apply_async", lambda kwargs, **_: sent.append(kwargs))
    with django_capture_on_commit_callbacks(execute=True):
        services.model_version_promote(model_version=version)

    builds = []
    original = loading._build_scorer
    monkeypatch.setattr(loading, "_build_scorer", lambda v: builds.append(v.pk) or original(v))
    for kwargs in sent + sent:  # the promotion's tasks, and a redelivery: no exception escapes
        assert tasks.score_scenarios.run(**kwargs) == 0
    assert builds == [version.pk]  # tried once; later tasks are answered from memory (no load storm)
    assert not Prediction.objects.exists()  # left missing for the sweeper, not marked failed
    version.refresh_from_db()
    assert str(missing) in version.load_error and "not found" in version.load_error
    assert version.load_checked_at is not None
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and str(missing) in errors[0].getMessage()

    listing = admin_client.get(reverse("admin:modelloop_modelversion_changelist")).content.decode()
    page = admin_client.get(reverse("admin:modelloop_modelversion_change", args=[version.pk])).content.decode()
    for html in (listing, page):
        assert "load failed" in html and str(missing) in html

    # After LOAD_RETRY_SECONDS the version is tried again (the directory may have been fixed).
    monkeypatch.setattr(loading, "LOAD_RETRY_SECONDS", 0.0)
    assert tasks.score_scenarios.run(**sent[0]) == 0
    assert builds == [version.pk, version.pk]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_reports_a_broken_model_at_start_stays_up_and_recovers(start_worker, tmp_path):  # noqa: F811
    missing = tmp_path / "models" / "Qwen2-VL-2B-Instruct"
    broken = services.model_version_create(name="broken-vlm", scorer="hf-vlm-zero-shot", config={"backbone_path": str(missing)})
    services.model_version_promote(model_version=broken)  # nothing to rescore yet

    proc, log = start_worker()

    def reported() -> bool:
        broken.refresh_from_db()
        return bool(broken.load_error)

    wait_for(reported, timeout=90, what="the worker to report the broken model at start", logs=[log])
    assert str(missing) in broken.load_error
    text = open(log.name).read()
    assert "ERROR" in text and str(missing) in text

    scenario = make_scenarios(make_context(), 1)[0]  # queued to the real broker on commit
    wait_for(lambda: "left unscored" in open(log.name).read(), timeout=60, what="the task to be dropped", logs=[log])
    time.sleep(1)
    assert proc.poll() is None  # still running: no crash, no restart loop
    assert not Prediction.objects.exists()

    baseline = ModelVersion.objects.get(name=BASELINE_NAME)
    services.model_version_promote(model_version=baseline)  # an operator switches back
    wait_for(
        lambda: Prediction.objects.filter(model_version=baseline, scenario=scenario, status="ok").exists(),
        timeout=120, what="the same worker to score with the baseline", logs=[log],
    )
    assert current_version() == baseline and proc.poll() is None
