"""Probe runs end to end on the demo data: the command, the stored results, the figures
against hand computations from direct scorer calls, the gate option, the Celery task, and
that nothing reaches the feature cache or the predictions. Offline scorers and a tiny VLM."""

import io
import math
from datetime import timedelta

import numpy as np
import pytest
import torch
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from annotation.dataset.export.service import dataset_export_create
from bench.probe import judge_demo
from modelloop import services as modelloop_services
from modelloop.models import FeatureCacheEntry, ModelVersion, Prediction
from modelloop.scoring.offline import ScoreHead, save_head
from modelloop.testing.tiny_vlms import build_tiny_vlm
from morale import jobs
from training import tasks
from training.gate import gate_decision
from training.models import ProbeResult, ProbeRun
from training.probes import figures
from training.probes import runner as probe_runner
from training.probes.gate import probe_gate_reason
from training.probes.runner import (
    ProbeError,
    cache_dir,
    conditions_for,
    inputs_for,
    pairs_from_export,
    probe_run_create,
    probe_run_execute,
    score_inputs,
)
from tests.factories import current_version

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker):
    """The demo data, judged 3 times per scenario, and a JSONL export of it: made once for
    the module (judging through the services takes a while) inside a transaction that is
    rolled back at its end, so the rows the migrations installed (the instructions, the
    built-in versions) are as they were for the tests that follow."""
    with django_db_blocker.unblock(), transaction.atomic():
        call_command("seed_demo", stdout=io.StringIO())
        # These hand computations assume a text-only current version: the zero-shot text
        # baseline, not the image-aware prior that a fresh deployment now starts with.
        ModelVersion.objects.update(is_current=False)
        ModelVersion.objects.filter(scorer="zero-shot-text-baseline").update(is_current=True)
        judge_demo(annotators=3)
        export = dataset_export_create(fmt="jsonl", test_fraction=0.5)
        yield export
        transaction.set_rollback(True)


def baseline_variant(name: str, temperature: float) -> ModelVersion:
    return modelloop_services.model_version_create(
        name=name, scorer="zero-shot-text-baseline", config={"temperature": temperature}
    )


def head_version(tmp_path, seed: int = 0) -> ModelVersion:
    torch.manual_seed(seed)
    path = tmp_path / "head.safetensors"
    save_head(ScoreHead(hidden=32), path)
    return modelloop_services.model_version_register(
        name=f"random-head-{seed}", scorer="efficientnet-minilm-mlp", config={"hidden": 32}, head_weights_path=path
    )


def direct_scores(version, export, condition_name, *, split="all", contexts=None, seed=0):
    """The scores of one condition computed here, outside the runner's loop."""
    pairs = pairs_from_export(export.file.path, split=split, max_contexts=contexts)
    condition = next(c for c in conditions_for("pilot") if c.name == condition_name)
    inputs = inputs_for(condition, pairs, seed=seed, folder=cache_dir())
    results = modelloop_services.scorer_for(version).score(inputs)
    return pairs, np.array([min(5.0, max(1.0, r.score)) for r in results])


def test_the_command_probes_the_current_version_on_demo_data(demo):
    baseline = current_version()
    predictions_before = Prediction.objects.count()
    out = io.StringIO()
    call_command("probe_model", "--split", "all", "--contexts", "2", stdout=out, verbosity=0)
    run = ProbeRun.objects.get()
    assert run.status == ProbeRun.Status.SUCCEEDED and run.model_version == baseline and run.export == demo
    assert run.n_contexts == 2 and run.progress == 1.0
    result = ProbeResult.objects.get(run=run)
    text = out.getvalue()
    assert baseline.name in text and "Rel. mCE" in text and "gaussian_noise" in text

    # Hand computation from direct scorer calls: the typo flip rate, the persuasion shift.
    pairs, clean = direct_scores(baseline, demo, "clean", contexts=2)
    _, typos = direct_scores(baseline, demo, "text:typos", contexts=2)
    _, up = direct_scores(baseline, demo, "persuasion:persuade_acceptable", contexts=2)
    _, down = direct_scores(baseline, demo, "persuasion:persuade_unacceptable", contexts=2)
    rows = {row["name"]: row for row in result.figures["conditions"]}
    flips = np.mean([(a <= 2.5) != (b <= 2.5) for a, b in zip(clean, typos)])
    assert rows["text:typos"]["flip_rate"] == pytest.approx(flips)
    assert rows["text:typos"]["mean_abs_shift"] == pytest.approx(np.mean(np.abs(typos - clean)), abs=1e-6)
    persuasion = (np.mean(up - clean) + np.mean(clean - down)) / 2
    assert result.persuasion_sensitivity == pytest.approx(persuasion, abs=1e-6)
    human = np.array([p.human_mean for p in pairs])
    assert result.clean_error == pytest.approx(np.mean(np.abs(clean - human)), abs=1e-6)
    # The baseline reads text only: the image changes nothing, so every corrupted error is the clean one.
    assert result.image_reliance == 0.0 and result.figures["flip_rate_image"] == 0.0
    for by_severity in result.figures["corruption"]["errors"].values():
        assert set(by_severity) == {"1", "3", "5"}
        assert all(v == pytest.approx(result.clean_error) for v in by_severity.values())
    assert result.mce is None and result.rel_mce is None  # no reference given
    # The human figures: 30% of the simulated judgments are labelled image or both, roughly.
    humans = result.figures["human_modality"]
    assert humans["n_judgments"] > 0 and 0 < humans["share_image_or_both"] < 1
    # Nothing was stored as a prediction or cached as a feature.
    assert Prediction.objects.count() == predictions_before
    assert not FeatureCacheEntry.objects.exists()


def test_a_head_against_the_baseline_hand_checked_rel_mce_and_image_reliance(demo, tmp_path):
    baseline = current_version()
    head = head_version(tmp_path)
    run = probe_run_execute(run_id=probe_run_create(model_version=head, against=baseline, split="all", max_contexts=1).pk)
    assert run.status == ProbeRun.Status.SUCCEEDED, run.error
    mine = ProbeResult.objects.get(run=run, is_reference=False)
    ref = ProbeResult.objects.get(run=run, is_reference=True)
    assert ref.model_version == baseline and ref.mce == pytest.approx(1.0) and ref.rel_mce == pytest.approx(1.0)
    errors, ref_errors = mine.figures["corruption"]["errors"], ref.figures["corruption"]["errors"]
    ce = {c: sum(errors[c].values()) / sum(ref_errors[c].values()) for c in errors}
    assert mine.figures["corruption"]["ce"] == pytest.approx(ce)
    assert mine.mce == pytest.approx(sum(ce.values()) / len(ce))
    assert mine.rel_mce == pytest.approx(mine.mce / ref.mce)
    # Each corrupted error, recomputed from the head's own scores of the corrupted images.
    pairs, noisy = direct_scores(head, demo, "gaussian_noise@5", contexts=1)
    human = np.array([p.human_mean for p in pairs])
    assert errors["gaussian_noise"]["5"] == pytest.approx(np.mean(np.abs(noisy - human)), abs=1e-5)
    _, clean = direct_scores(head, demo, "clean", contexts=1)
    _, grey = direct_scores(head, demo, "neutral_image", contexts=1)
    assert mine.image_reliance == pytest.approx(np.mean(np.abs(grey - clean) >= 1.0))
    assert mine.figures["modality"]["neutral_image_abs_shift"] == pytest.approx(np.mean(np.abs(grey - clean)), abs=1e-5)
    _, dark = direct_scores(head, demo, "brightness@5", contexts=1)
    rows = {row["name"]: row for row in mine.figures["conditions"]}
    assert rows["brightness@5"]["flip_rate"] == pytest.approx(np.mean([(a <= 2.5) != (b <= 2.5) for a, b in zip(clean, dark)]))
    # Pooled over conditions of equal size: the mean of the per-condition flip rates.
    corrupted = [row["flip_rate"] for row in rows.values() if row["kind"] == "corruption"]
    assert mine.figures["flip_rate_image"] == pytest.approx(sum(corrupted) / len(corrupted))
    # The head is a FeatureScorer: its probe went around the feature cache, which holds nothing.
    assert not FeatureCacheEntry.objects.exists()
    # Corrupted images were made once, on disk, keyed by sha256, corruption, severity and seed.
    for p in pairs:
        assert (cache_dir() / "v1" / p.image_sha256[:2] / f"{p.image_sha256}-gaussian_noise-s5-seed0.png").is_file()


def test_rel_mce_of_text_only_versions_is_their_clean_error_ratio(demo):
    """A text-only scorer's corrupted error equals its clean error at every corruption, so
    Rel. mCE = mean_c sum_s E / sum_s E_ref = E_clean / E_ref,clean: a hand check end to end."""
    reference = current_version()
    candidate = baseline_variant("sharper", 20.0)
    run = probe_run_execute(run_id=probe_run_create(model_version=candidate, against=reference, split="all", max_contexts=2).pk)
    mine = ProbeResult.objects.get(run=run, is_reference=False)
    ref = ProbeResult.objects.get(run=run, is_reference=True)
    assert mine.rel_mce == pytest.approx(mine.clean_error / ref.clean_error)


def test_bad_options_get_clear_errors(demo):
    baseline = current_version()
    with pytest.raises(CommandError, match="no model version #999"):
        call_command("probe_model", "--version", "999", stdout=io.StringIO())
    with pytest.raises(CommandError, match="at least 1"):
        call_command("probe_model", "--contexts", "0", stdout=io.StringIO())
    with pytest.raises(ProbeError, match="against itself"):
        probe_run_create(model_version=baseline, against=baseline)
    with pytest.raises(CommandError, match="no dataset export #999"):
        call_command("probe_model", "--export", "999", stdout=io.StringIO())
    assert not ProbeRun.objects.exists()


def test_a_version_that_cannot_load_fails_its_run_with_the_reason(demo):
    broken = modelloop_services.model_version_create(name="broken", scorer="efficientnet-minilm-mlp", config={})
    with pytest.raises(CommandError, match="needs head weights"):
        call_command("probe_model", "--version", str(broken.pk), "--contexts", "1", stdout=io.StringIO(), verbosity=0)
    assert ProbeRun.objects.get().status == ProbeRun.Status.FAILED


def test_the_task_runs_a_queued_probe_once_on_the_gpu_queue(demo):
    assert settings.CELERY_TASK_ROUTES["training.*"] == {"queue": "gpu"}
    assert tasks.probe_version.name == "training.probe_version"
    run = probe_run_create(model_version=current_version(), split="all", max_contexts=1)
    assert tasks.probe_version(run.pk) == run.pk
    tasks.probe_version(run.pk)  # delivered twice: nothing is done again
    assert ProbeRun.objects.get(pk=run.pk).status == ProbeRun.Status.SUCCEEDED
    assert ProbeResult.objects.filter(run=run).count() == 1


def test_a_probe_whose_worker_was_lost_is_failed_by_the_sweep_and_never_run_twice(settings):
    """The probe task acknowledges its message at the start: the job lifecycle's sweep, not
    Redis, finds a probe whose worker died (SIGKILL leaves the row running and silent)."""
    run = probe_run_create(model_version=current_version(), split="all", max_contexts=1)
    held = jobs.claim(probe_runner.PROBE_JOB, run.pk, started_at=timezone.now())  # a worker took it, then died
    assert held is not None and jobs.claim(probe_runner.PROBE_JOB, run.pk) is None
    assert probe_run_execute(run_id=run.pk).status == ProbeRun.Status.RUNNING  # a second delivery does nothing
    assert tasks.sweep_runs()["probes"]["failed"] == 0  # still within MORALE_JOB_STALE_MINUTES
    later = timezone.now() + timedelta(minutes=settings.MORALE_JOB_STALE_MINUTES + 1)
    assert probe_runner.probe_runs_sweep(now=later)["failed"] == 1
    lost = ProbeRun.objects.get(pk=run.pk)
    assert lost.status == ProbeRun.Status.FAILED and "the worker was lost" in lost.error and lost.finished_at
    assert not ProbeResult.objects.filter(run=run).exists()


# --- the gate option ---------------------------------------------------------------------------
def _stored(candidate, current, *, flip: tuple[float, float], rel_mce: float | None) -> ProbeRun:
    run = ProbeRun.objects.create(model_version=candidate, against=current, status=ProbeRun.Status.SUCCEEDED)
    ProbeResult.objects.create(run=run, model_version=candidate, flip_rate=flip[0], rel_mce=rel_mce)
    ProbeResult.objects.create(run=run, model_version=current, is_reference=True, flip_rate=flip[1], rel_mce=1.0)
    return run


def test_the_gate_option_is_off_by_default(settings):
    assert settings.MORALE_GATE_MAX_FLIP_RATE_INCREASE is None and settings.MORALE_GATE_MAX_REL_MCE is None
    current, candidate = current_version(), baseline_variant("candidate", 4.0)
    _stored(candidate, current, flip=(0.9, 0.0), rel_mce=9.0)
    assert probe_gate_reason(candidate, current) is None


def test_the_gate_refuses_a_less_robust_candidate(settings):
    current, candidate = current_version(), baseline_variant("candidate", 4.0)
    run = _stored(candidate, current, flip=(0.30, 0.10), rel_mce=1.25)
    settings.MORALE_GATE_MAX_FLIP_RATE_INCREASE = 0.1
    reason = probe_gate_reason(candidate, current)
    assert "flip rate 0.3000 is above the current 0.1000 by more than 0.1" in reason and f"#{run.pk}" in reason
    settings.MORALE_GATE_MAX_FLIP_RATE_INCREASE = 0.25
    assert probe_gate_reason(candidate, current) is None
    settings.MORALE_GATE_MAX_REL_MCE = 1.2
    assert "Rel. mCE 1.2500 is above 1.2" in probe_gate_reason(candidate, current)
    settings.MORALE_GATE_MAX_REL_MCE = 1.3
    assert probe_gate_reason(candidate, current) is None
    # In the gate's decision: good ranking figures, refused by the probe.
    settings.MORALE_GATE_MAX_REL_MCE = 1.0
    same = {"ndcg@5": 0.9, "unsafe_rate_pooled": 0.1, "mae": 0.5}  # the gate needs an MAE too (issue 11)
    decision = gate_decision(candidate=same, current=same, current_name=current.name, versions=(candidate, current))
    assert not decision.promote and "Rel. mCE 1.2500 is above 1.0" in decision.reason
    assert gate_decision(candidate=same, current=same, current_name=current.name).promote  # without versions: as before


def test_the_gate_runs_the_probe_when_there_is_none(demo, settings):
    settings.MORALE_GATE_MAX_REL_MCE = 10.0
    current, candidate = current_version(), baseline_variant("candidate", 20.0)
    assert probe_gate_reason(candidate, current) is None
    run = ProbeRun.objects.get()
    assert run.model_version == candidate and run.against == current and run.status == ProbeRun.Status.SUCCEEDED
    settings.MORALE_GATE_MAX_REL_MCE = 0.0001
    assert "Rel. mCE" in probe_gate_reason(candidate, current)
    assert ProbeRun.objects.count() == 1  # the stored probe is reused


# --- a tiny real-architecture VLM --------------------------------------------------------------
def test_a_tiny_vlm_is_probed_through_the_worker_scorer(demo, tmp_path):
    directory = build_tiny_vlm("qwen2_vl", tmp_path / "Qwen2-VL-tiny")
    version = modelloop_services.model_version_create(
        name="tiny-qwen", scorer="hf-vlm-zero-shot", config={"backbone_path": str(directory), "max_image_side": 64}
    )
    run = probe_run_execute(run_id=probe_run_create(model_version=version, split="all", max_contexts=1).pk)
    assert run.status == ProbeRun.Status.SUCCEEDED, run.error
    result = ProbeResult.objects.get(run=run)
    _, clean = direct_scores(version, demo, "clean", contexts=1)
    _, blurred = direct_scores(version, demo, "defocus_blur@5", contexts=1)
    rows = {row["name"]: row for row in result.figures["conditions"]}
    assert rows["defocus_blur@5"]["mean_abs_shift"] == pytest.approx(np.mean(np.abs(blurred - clean)), abs=1e-4)
    assert rows["defocus_blur@5"]["flip_rate"] == pytest.approx(np.mean([(a <= 2.5) != (b <= 2.5) for a, b in zip(clean, blurred)]))
    assert all(math.isfinite(row["error"]) for row in rows.values())
