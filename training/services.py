"""Training runs (writes): queue, send, execute; export -> lists (``training.data``) -> train
(``training.train`` / ``training.lora``) -> candidate version -> gate (``training.gate``).

A run never changes the current model version unless it finished, produced a version, and
that version passed the gate; promotion is the last step and is atomic
(``modelloop.services.model_version_promote``). Called by the tasks, admin, API and commands.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.dataset.export.service import dataset_export_create
from annotation.models import DatasetExport
from modelloop import selectors as modelloop_selectors
from modelloop import services as modelloop_services
from modelloop.models import ModelVersion
from modelloop.scoring import ScoringInput
from modelloop.scoring.hf_vlm import check_model_dir, save_lora
from modelloop.scoring.offline import EfficientNetMiniLMBackbone, load_head, save_head
from morale import jobs

from .data import image_lists_from_export, lists_from_export
from .evaluation import Split, prediction_rows, small_test_warning, write_predictions
from .gate import gate_decision, gate_metrics
from .lists import ImageList, TrainingDataError
from .lora import LoraTrainResult, lora_scores, train_lora
from .metrics import json_ready
from .models import TrainingRun
from .train import TrainConfig, TrainResult, config_dict, predict, train_head

logger = logging.getLogger(__name__)

HEAD_SCORER = "efficientnet-minilm-mlp"  # the scorer that serves heads trained here (mode head)
LORA_SCORER = "hf-vlm-head"  # the scorer that serves a VLM + LoRA adapter + head (mode lora)
LORA_RELOAD_PAIRS = 8  # pairs scored by the reloaded version to check it (one scorer batch)


class TrainingRunInProgress(Exception):
    """Another run is queued or running; runs never overlap."""


def _send(run_id: int) -> None:
    from . import tasks

    tasks.execute_run.apply_async(args=[run_id])


# A run whose worker died is failed, never started again by itself: a new run (beat, admin)
# trains on fresh data. Queued runs whose message was lost are sent again.
TRAINING_JOB = jobs.JobKind(
    name="training run", model=TrainingRun, send=_send, done=TrainingRun.Status.SUCCEEDED, resumable=None
)


def training_runs_sweep(now=None) -> dict:
    """The sweep of training runs (``morale.jobs.sweep``): a running run silent for
    ``MORALE_JOB_STALE_MINUTES`` (SIGKILL, lost machine) is failed with the reason and stops
    holding the lock; a queued run whose message was lost is sent again. Periodic (task
    ``training.sweep_runs``) and whenever a run is queued."""
    return jobs.sweep(TRAINING_JOB, now=now)



def training_run_queue(
    *, config: dict | None = None, export: DatasetExport | None = None, triggered_by: str = TrainingRun.Trigger.COMMAND
) -> TrainingRun:
    """Reserve the (single) training slot. Raises TrainingRunInProgress if it is taken,
    ValueError for a bad config."""
    full_config = config_dict(TrainConfig(**(config or {})))  # validates
    training_runs_sweep()  # a killed run stops blocking this one as soon as it is stale
    try:
        with transaction.atomic():
            return TrainingRun.objects.create(config=full_config, export=export, triggered_by=triggered_by)
    except IntegrityError:
        active = TrainingRun.objects.filter(status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]).first()
        raise TrainingRunInProgress(f"{active} is still going; runs never overlap") from None


def training_run_send(*, run_id: int, task) -> None:
    """Hand a queued run to a worker; with the broker down, fail it at once (so it does
    not hold the training lock) instead of leaving it queued."""
    try:
        task.apply_async(args=[run_id])
    except Exception as exc:  # noqa: BLE001 - any broker failure
        logger.warning("could not queue training run #%s", run_id, exc_info=True)
        TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
            status=TrainingRun.Status.FAILED, error=f"the broker could not be reached: {exc}", finished_at=timezone.now()
        )
    else:
        TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(sent_at=timezone.now())


def _update(run: TrainingRun, **fields) -> None:
    """Write fields (and a heartbeat) of the running ``run`` this worker holds; JobLost if the
    sweep declared it lost meanwhile (then nothing is written)."""
    if "metrics" in fields:
        fields["metrics"] = json_ready(fields["metrics"])
    jobs.write(TRAINING_JOB, run, **fields)


def _log(run: TrainingRun, line: str) -> None:
    logger.info("training run #%s: %s", run.pk, line)
    _update(run, log=(run.log + f"{timezone.now():%H:%M:%S} {line}\n")[-100_000:])


def training_run_execute(
    *, run_id: int, backbone=None, progress: Callable[[int, int], None] | None = None
) -> TrainingRun:
    """Run a queued training to the end: the run ends succeeded or failed, never stuck.

    Mode head: `backbone` (a FeatureScorer-like object with ``backbone_ref``/``features``)
    defaults to the offline EfficientNet-Lite0 + MiniLM backbone of the head scorer. Mode
    lora ignores it: the run's config names the VLM checkpoint (``vlm_path``).
    """
    run = jobs.claim(TRAINING_JOB, run_id, started_at=timezone.now())
    if run is None:
        return TrainingRun.objects.get(pk=run_id)  # delivered twice: the first delivery runs it
    try:
        with jobs.working_on(TRAINING_JOB, run):  # feature extraction beats through jobs.beat_current
            _execute(run, backbone=backbone, progress=progress)
    except jobs.JobLost as exc:
        if TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING, claim_token=run.claim_token).exists():
            jobs.fail(TRAINING_JOB, run, f"JobLost: {exc}"[:10_000])  # another job of this run (its export) was lost
        else:  # the sweep failed the run meanwhile (silent too long): stop, write nothing
            logger.warning("training run #%s abandoned: %s", run.pk, exc)
    except Exception as exc:  # noqa: BLE001 - every failure ends the run with its reason
        logger.exception("training run #%s failed", run.pk)
        jobs.fail(TRAINING_JOB, run, f"{type(exc).__name__}: {exc}"[:10_000])
    # As stored: the job's fenced writes are UPDATEs, so the objects in memory (the run's
    # model version and its metrics among them) are older than the rows.
    return TrainingRun.objects.select_related("model_version").get(pk=run.pk)


class _Reporter:
    """Writes a run's progress (every 2%) and per-epoch metrics to its row as it trains."""

    def __init__(self, run: TrainingRun, progress: Callable[[int, int], None] | None) -> None:
        self.run, self.progress = run, progress
        self.history: list[dict] = []
        self.last_progress = 0.0

    def step(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)
        fraction = done / total
        if fraction - self.last_progress >= 0.02 or done == total:
            self.last_progress = fraction
            _update(self.run, progress=min(1.0, fraction))
        else:
            jobs.beat(TRAINING_JOB, self.run)  # throttled: a slow 2% still shows the run alive

    def epoch(self, row: dict) -> None:
        self.history.append(row)
        _update(self.run, metrics={"history": self.history})
        _log(
            self.run,
            f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}, test NDCG@5 {row['test']['ndcg@5']:.4f}",
        )


def _execute(run: TrainingRun, *, backbone, progress) -> None:
    config = TrainConfig(**run.config)
    if run.export is None:
        _log(run, "writing a new JSONL export")
        _update(run, export=dataset_export_create(fmt="jsonl"))
    if run.export.status != DatasetExport.Status.DONE or run.export.format not in ("jsonl", "parquet"):
        raise TrainingDataError(f"{run.export} is not a finished JSONL or Parquet export")
    reporter = _Reporter(run, progress)
    # A registered version whose saved files were checked to reload to the trained model.
    if config.mode == "lora":
        version, result = _lora_candidate(run, config, reporter)
    else:
        version, result = _head_candidate(run, config, backbone or EfficientNetMiniLMBackbone(), reporter)

    warnings = [w for w in [small_test_warning(result.test_data.n_lists)] if w]
    for warning in warnings:
        _log(run, warning)
    predictions = _write_run_predictions(run, config, result)
    _log(run, f"per-scenario test predictions: {predictions}")
    current = modelloop_selectors.model_version_current_or_none()
    candidate_metrics, current_metrics = gate_metrics(
        head=result.head, test=result.test_data, test_metrics=result.test_metrics, current=current, k=config.ndcg_k
    )
    decision = gate_decision(
        candidate=candidate_metrics, current=current_metrics, current_name=current.name if current else "(none)",
        versions=(version, current),
    )
    figures = {
        "test": result.test_metrics,
        "test_before_calibration": result.raw_test_metrics,
        "gate": {"candidate": candidate_metrics, "current": current_metrics},
        "warnings": warnings,
        "predictions_csv": str(predictions),
    }
    ModelVersion.objects.filter(pk=version.pk).update(metrics=json_ready(figures))
    _update(
        run,
        model_version=version,
        metrics={"history": reporter.history, "initial_loss": result.initial_loss, **figures},
        gate_reason=decision.reason,
    )
    _log(run, decision.reason)
    if decision.promote:
        modelloop_services.model_version_promote(model_version=version)
    _update(
        run, status=TrainingRun.Status.SUCCEEDED, promoted=decision.promote, progress=1.0, finished_at=timezone.now()
    )


def _write_run_predictions(run: TrainingRun, config: TrainConfig, result: TrainResult) -> Path:
    """The run's per-scenario test predictions (raw and deployed), as ``evaluate_model`` writes them."""
    test = result.test_data
    split = Split("export", test, test)
    rows = [
        {**row, "method": f"run #{run.pk}", "loss": config.loss + (f"+{config.mse_weight:g}*mse" if config.mse_weight else "")}
        for row in prediction_rows(
            "run", config.seed, split, predict(result.raw_head, test.features), predict(result.head, test.features), ""
        )
    ]
    return write_predictions(settings.VAR_DIR / "evaluations" / f"training-run{run.pk}-predictions.csv", rows)


def _head_candidate(run: TrainingRun, config: TrainConfig, backbone, reporter: _Reporter) -> tuple[ModelVersion, TrainResult]:
    """Mode head: cached features -> head -> an efficientnet-minilm-mlp version."""
    _log(run, f"reading {run.export} with backbone {backbone.backbone_ref}")
    data = lists_from_export(path=run.export.file.path, backbone=backbone)
    _log(
        run,
        f"{data.train.n_lists} train lists ({len(data.train.targets)} scenarios), "
        f"{data.test.n_lists} test lists; {data.skipped_single} single-scenario list(s) left out",
    )
    result = train_head(config, data.train, data.test, on_epoch=reporter.epoch, progress=reporter.step)
    with tempfile.TemporaryDirectory() as tmp:
        head_path = Path(tmp) / "head.safetensors"
        save_head(result.head, head_path)
        version = modelloop_services.model_version_register(
            name=f"head-{config.loss}-run{run.pk}-{timezone.now():%Y%m%d-%H%M%S}",
            scorer=HEAD_SCORER,
            config={"hidden": config.hidden, "dropout": config.dropout},
            head_weights_path=head_path,
            calibration=result.calibration,
            backbone_ref=backbone.backbone_ref,
            description=(
                f"{config.loss} head trained by run #{run.pk} on {run.export} "
                f"({data.train.n_lists} train lists); test NDCG@5 {result.test_metrics['ndcg@5']:.4f}"
            ),
        )
    # The checkpoint must reload to the same outputs before it may serve annotators.
    reloaded = load_head(version.head_weights.path, version.config)
    probe = data.test.features[:64] if data.test.n_lists else data.train.features[:64]
    with torch.no_grad():
        if not torch.allclose(reloaded(probe), result.head(probe), atol=1e-5):
            raise TrainingDataError(f"the saved head of {version.name} does not reload to the trained one")
    return version, result


def _lora_candidate(run: TrainingRun, config: TrainConfig, reporter: _Reporter) -> tuple[ModelVersion, TrainResult]:
    """Mode lora: images and texts -> VLM + LoRA + head -> an hf-vlm-head version with its adapter."""
    _log(run, f"reading {run.export} for LoRA training on the VLM in {config.vlm_path}")
    data = image_lists_from_export(path=run.export.file.path)
    _log(
        run,
        f"{len(data.train)} train lists ({sum(len(lst.texts) for lst in data.train)} scenarios), "
        f"{len(data.test)} test lists; {data.skipped_single} single-scenario list(s) left out",
    )
    result: LoraTrainResult = train_lora(config, data.train, data.test, on_epoch=reporter.epoch, progress=reporter.step)
    vlm_dir = check_model_dir(config.vlm_path)
    with tempfile.TemporaryDirectory() as tmp:
        head_path = Path(tmp) / "head.safetensors"
        save_head(result.head, head_path)
        adapter_dir = save_lora(result.model, Path(tmp) / "adapter")
        # backbone_ref stays empty here: it names the VLM *with this adapter*, and the
        # reload below fills it in (hf:<dir>+lora:<adapter sha>:<digest>), so a promotion
        # never reuses cached features of the frozen VLM.
        version = modelloop_services.model_version_register(
            name=f"lora-{config.loss}-run{run.pk}-{timezone.now():%Y%m%d-%H%M%S}",
            scorer=LORA_SCORER,
            config={
                "backbone_path": str(vlm_dir),
                "max_image_side": config.max_image_side,
                "head": {"hidden": config.hidden, "dropout": config.dropout},
            },
            head_weights_path=head_path,
            lora_adapter_dir=adapter_dir,
            calibration=result.calibration,
            description=(
                f"LoRA adapter on {vlm_dir.name} and a {config.loss} head, trained by run #{run.pk} on "
                f"{run.export} ({len(data.train)} train lists); test NDCG@5 {result.test_metrics['ndcg@5']:.4f}"
            ),
        )
    _check_lora_reload(version, result, data.test or data.train)
    return version, result


def _check_lora_reload(version: ModelVersion, result: LoraTrainResult, lists: list[ImageList]) -> None:
    """The stored version, loaded as a worker loads it, must score like the model in memory.

    Raises ScoringError (the version does not load; ``load_error`` is set on it) or
    TrainingDataError (it loads but scores differently).
    """
    inputs = [
        ScoringInput(sid, lst.image_path, lst.setting, text)
        for lst in lists
        for sid, text in zip(lst.scenario_ids, lst.texts)
    ][:LORA_RELOAD_PAIRS]
    scorer = modelloop_services.scorer_for(version)  # also records its backbone_ref on the version
    scored = scorer.score(inputs)
    failed = [r for r in scored if not r.ok]
    if failed:
        first = failed[0]
        raise TrainingDataError(f"the saved version {version.name} cannot score scenario #{first.scenario_id}: {first.error}")
    expected = lora_scores(result, [(item.image_path, item.setting, item.text) for item in inputs])
    reloaded = torch.tensor([r.score for r in scored], dtype=torch.float32)
    # Same batch, same weights, same kernels: equal up to rounding (bf16 on a GPU).
    tolerance = 1e-4 if result.device.type == "cpu" else 1e-2
    difference = float((reloaded - expected).abs().max())
    if not difference <= tolerance:
        raise TrainingDataError(
            f"the saved adapter and head of {version.name} do not reload to the trained model "
            f"(scores differ by up to {difference:.6f})"
        )

