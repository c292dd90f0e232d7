"""Training runs: export -> lists -> train (head on cached features, or LoRA through the
VLM) -> candidate version -> gate.

Training reads an export file, never the live judgment tables, so a run is reproducible
from its export. A run never changes the current model version unless it finished,
produced a version, and that version passed the gate; promotion is the last step and is
atomic (``modelloop.services.model_version_promote``).
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.exports import dataset_export_create, iter_export
from annotation.models import DatasetExport
from modelloop import services as modelloop_services
from modelloop.models import ModelVersion, Prediction
from modelloop.scoring import ScoringInput
from modelloop.scoring.hf_vlm import check_model_dir, save_lora
from modelloop.scoring.offline import EfficientNetMiniLMBackbone, load_head, save_head

from . import metrics
from .metrics import json_ready
from .models import TrainingRun
from .lists import MODALITIES, ImageList, ListData, TrainingDataError
from .lora import LoraTrainResult, lora_scores, train_lora
from .train import TrainConfig, TrainResult, config_dict, evaluate, train_head

logger = logging.getLogger(__name__)

HEAD_SCORER = "efficientnet-minilm-mlp"  # the scorer that serves heads trained here (mode head)
LORA_SCORER = "hf-vlm-head"  # the scorer that serves a VLM + LoRA adapter + head (mode lora)
LORA_RELOAD_PAIRS = 8  # pairs scored by the reloaded version to check it (one scorer batch)


class TrainingRunInProgress(Exception):
    """Another run is queued or running; runs never overlap."""


# --- data: export file -> lists with features -------------------------------------------------
@dataclass
class ExportLists:
    train: ListData
    test: ListData
    skipped_single: int  # lists of one scenario: nothing to rank, left out


def lists_from_export(*, path: str, backbone) -> ExportLists:
    """Read an export and attach each scenario's backbone features.

    The lists, their targets and splits come from the export file alone. Features come
    from the feature cache, keyed by the scenario and a hash of its image, setting and
    text, so they are those of the content the annotators saw. Raises TrainingDataError
    when a scenario's features cannot be computed (a missing image file, a corrupt image):
    the message names the scenarios and the reasons.
    """
    lists = {"train": [], "test": []}
    skipped = 0
    for record in iter_export(path):
        items = [(s["scenario_id"], float(s["mean"]), MODALITIES.index(s["majority_modality"])) for s in record["scenarios"]]
        if len(items) < 2:
            skipped += 1
            continue
        lists[record["split"]].append(items)
    ids = [sid for split in lists.values() for lst in split for sid, _, _ in lst]
    if not ids:
        raise TrainingDataError(f"the export has no list of two or more scenarios ({skipped} list(s) of one left out)")
    features, errors = modelloop_services.features_for(backbone, ids)
    failed = [(sid, error) for sid, error in zip(ids, errors) if error]
    if failed:
        shown = "; ".join(f"scenario #{sid}: {error}" for sid, error in failed[:5])
        raise TrainingDataError(f"{len(failed)} scenario(s) have no features: {shown}")
    row_of = {sid: row for row, sid in enumerate(ids)}

    def build(split_lists) -> ListData:
        flat = [item for lst in split_lists for item in lst]
        lengths = [len(lst) for lst in split_lists]
        return ListData(
            features=features[torch.tensor([row_of[sid] for sid, _, _ in flat], dtype=torch.long)],
            targets=torch.tensor([t for _, t, _ in flat], dtype=torch.float32),
            modality=torch.tensor([m for _, _, m in flat], dtype=torch.long),
            offsets=torch.tensor(np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]), dtype=torch.long),
            scenario_ids=[sid for sid, _, _ in flat],
        )

    return ExportLists(train=build(lists["train"]), test=build(lists["test"]), skipped_single=skipped)


@dataclass
class ExportImageLists:
    train: list[ImageList]
    test: list[ImageList]
    skipped_single: int  # lists of one scenario: nothing to rank, left out


def image_lists_from_export(*, path: str) -> ExportImageLists:
    """Read an export into per-context lists of image, setting, texts and mean scores (mode lora).

    Everything comes from the export file; image paths are the export's, in the default
    storage (``MEDIA_ROOT``). Raises TrainingDataError when no list has two scenarios.
    Unreadable images are found by ``train_lora``, before it loads the model.
    """
    lists: dict[str, list[ImageList]] = {"train": [], "test": []}
    skipped = 0
    for record in iter_export(path):
        scenarios = record["scenarios"]
        if len(scenarios) < 2:
            skipped += 1
            continue
        lists[record["split"]].append(
            ImageList(
                context_id=record["context_id"],
                image_path=default_storage.path(record["image_path"]),
                setting=record["setting"],
                texts=[s["text"] for s in scenarios],
                targets=[float(s["mean"]) for s in scenarios],
                modality=[MODALITIES.index(s["majority_modality"]) for s in scenarios],
                scenario_ids=[s["scenario_id"] for s in scenarios],
            )
        )
    if not lists["train"] and not lists["test"]:
        raise TrainingDataError(f"the export has no list of two or more scenarios ({skipped} list(s) of one left out)")
    return ExportImageLists(train=lists["train"], test=lists["test"], skipped_single=skipped)


# --- the gate ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    candidate: dict
    current: dict | None


def version_metrics_on(version: ModelVersion, test: ListData, k: int = 5) -> tuple[dict, list[int]] | None:
    """The version's stored predictions, evaluated on the test lists it has scored fully.

    Returns (metrics, indices of the lists used), or None when it has scored none.
    """
    scores = dict(
        Prediction.objects.filter(
            model_version=version, scenario_id__in=test.scenario_ids, status=Prediction.Status.OK
        ).values_list("scenario_id", "score")
    )
    ids = np.array(test.scenario_ids)
    lists, used = [], []
    for n, (true, idx) in enumerate(test.lists()):
        preds = [scores.get(int(sid)) for sid in ids[idx]]
        if all(p is not None for p in preds):
            lists.append((true, np.array(preds, dtype=float)))
            used.append(n)
    if not lists:
        return None
    return metrics.evaluate_lists(lists, k=k), used


def gate_decision(*, candidate: dict, current: dict | None, current_name: str) -> GateDecision:
    """Promote only if NDCG@5 and Unsafe Rate are no worse than the current version's on
    the same test lists, within MORALE_GATE_NDCG_TOLERANCE / MORALE_GATE_UNSAFE_TOLERANCE."""
    if current is None:
        return GateDecision(
            False,
            f"the current version {current_name} has no scores on the test split to compare with; "
            "the new version stays a candidate (promote it in the admin after checking it)",
            candidate,
            None,
        )
    ndcg_tol = settings.MORALE_GATE_NDCG_TOLERANCE
    unsafe_tol = settings.MORALE_GATE_UNSAFE_TOLERANCE
    new_ndcg, old_ndcg = candidate["ndcg@5"], current["ndcg@5"]
    new_unsafe, old_unsafe = candidate["unsafe_rate_pooled"], current["unsafe_rate_pooled"]
    problems = []
    if new_ndcg < old_ndcg - ndcg_tol:
        problems.append(f"NDCG@5 {new_ndcg:.4f} is below the current {old_ndcg:.4f} (tolerance {ndcg_tol})")
    # NaN: no unsafe scenario in the test lists, nothing to compare.
    if not (math.isnan(new_unsafe) or math.isnan(old_unsafe)) and new_unsafe > old_unsafe + unsafe_tol:
        problems.append(f"Unsafe Rate {new_unsafe:.4f} is above the current {old_unsafe:.4f} (tolerance {unsafe_tol})")
    if problems:
        return GateDecision(False, f"not promoted over {current_name}: " + "; ".join(problems), candidate, current)
    return GateDecision(
        True,
        f"promoted over {current_name}: NDCG@5 {new_ndcg:.4f} vs {old_ndcg:.4f}, "
        f"Unsafe Rate {new_unsafe:.4f} vs {old_unsafe:.4f} on the same test lists",
        candidate,
        current,
    )


# --- runs ---------------------------------------------------------------------------------------
def _fail_stale_runs(now) -> None:
    """A run whose worker died (SIGKILL, lost machine) stops holding the lock after a while."""
    stale_before = now - timedelta(minutes=settings.MORALE_TRAINING_STALE_MINUTES)
    for run in TrainingRun.objects.filter(status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]):
        last_sign = run.heartbeat_at or run.started_at or run.created_at
        if last_sign < stale_before:
            TrainingRun.objects.filter(pk=run.pk).update(
                status=TrainingRun.Status.FAILED,
                error=f"no sign of life since {last_sign:%Y-%m-%d %H:%M} UTC: the worker was lost",
                finished_at=now,
            )


def training_run_queue(
    *, config: dict | None = None, export: DatasetExport | None = None, triggered_by: str = TrainingRun.Trigger.COMMAND
) -> TrainingRun:
    """Reserve the (single) training slot. Raises TrainingRunInProgress if it is taken,
    ValueError for a bad config."""
    full_config = config_dict(TrainConfig(**(config or {})))  # validates
    _fail_stale_runs(timezone.now())
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


def _update(run: TrainingRun, **fields) -> None:
    fields["heartbeat_at"] = timezone.now()
    if "metrics" in fields:
        fields["metrics"] = json_ready(fields["metrics"])
    TrainingRun.objects.filter(pk=run.pk).update(**fields)
    for name, value in fields.items():
        setattr(run, name, value)


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
    run = TrainingRun.objects.get(pk=run_id)
    if run.status != TrainingRun.Status.QUEUED:
        return run  # delivered twice: the first delivery runs it
    _update(run, status=TrainingRun.Status.RUNNING, started_at=timezone.now())
    try:
        _execute(run, backbone=backbone, progress=progress)
    except Exception as exc:  # noqa: BLE001 - every failure ends the run with its reason
        logger.exception("training run #%s failed", run.pk)
        _update(run, status=TrainingRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:10_000], finished_at=timezone.now())
    return run


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

    def epoch(self, row: dict) -> None:
        self.history.append(row)
        _update(self.run, metrics={"history": self.history})
        _log(
            self.run,
            f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}, test NDCG@5 {row['test']['ndcg@5']:.4f}",
        )


@dataclass
class _Candidate:
    """A registered version whose saved files were checked to reload to the trained model."""

    version: ModelVersion
    result: TrainResult
    test: ListData  # the test lists with the trained model's features, for the gate


def _execute(run: TrainingRun, *, backbone, progress) -> None:
    config = TrainConfig(**run.config)
    if run.export is None:
        _log(run, "writing a new JSONL export")
        _update(run, export=dataset_export_create(fmt="jsonl"))
    if run.export.status != DatasetExport.Status.DONE or run.export.format not in ("jsonl", "parquet"):
        raise TrainingDataError(f"{run.export} is not a finished JSONL or Parquet export")
    reporter = _Reporter(run, progress)
    if config.mode == "lora":
        candidate = _lora_candidate(run, config, reporter)
    else:
        candidate = _head_candidate(run, config, backbone or EfficientNetMiniLMBackbone(), reporter)
    version, result = candidate.version, candidate.result

    current = modelloop_services.model_version_current_or_none()
    candidate_metrics, current_metrics = result.test_metrics, None
    compared = version_metrics_on(current, candidate.test, k=config.ndcg_k) if current else None
    if compared is not None:
        current_metrics, used = compared
        candidate_metrics = evaluate(result.head, _subset(candidate.test, used), k=config.ndcg_k)
    decision = gate_decision(
        candidate=candidate_metrics, current=current_metrics, current_name=current.name if current else "(none)"
    )
    ModelVersion.objects.filter(pk=version.pk).update(
        metrics=json_ready(
            {"test": result.test_metrics, "gate": {"candidate": candidate_metrics, "current": current_metrics}}
        )
    )
    _update(
        run,
        model_version=version,
        metrics={
            "history": reporter.history,
            "initial_loss": result.initial_loss,
            "test": result.test_metrics,
            "gate": {"candidate": candidate_metrics, "current": current_metrics},
        },
        gate_reason=decision.reason,
    )
    _log(run, decision.reason)
    if decision.promote:
        modelloop_services.model_version_promote(model_version=version)
    _update(
        run, status=TrainingRun.Status.SUCCEEDED, promoted=decision.promote, progress=1.0, finished_at=timezone.now()
    )


def _head_candidate(run: TrainingRun, config: TrainConfig, backbone, reporter: _Reporter) -> _Candidate:
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
    return _Candidate(version, result, data.test)


def _lora_candidate(run: TrainingRun, config: TrainConfig, reporter: _Reporter) -> _Candidate:
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
    return _Candidate(version, result, result.test_data)


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


def _subset(data: ListData, list_indices: list[int]) -> ListData:
    starts, ends = data.offsets[:-1], data.offsets[1:]
    pieces = [torch.arange(int(starts[i]), int(ends[i])) for i in list_indices]
    index = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)
    lengths = [len(p) for p in pieces]
    return ListData(
        features=data.features[index],
        targets=data.targets[index],
        modality=data.modality[index],
        offsets=torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.long),
        scenario_ids=[data.scenario_ids[i] for i in index.tolist()],
    )
