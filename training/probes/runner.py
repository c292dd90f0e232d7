"""Running a probe: export -> pairs -> conditions (clean, corruptions, text perturbations,
persuasion, modality) -> scores of each version -> figures -> ``ProbeResult`` rows.

Scoring is the worker's: the version's loaded scorer (``modelloop.services.scorer_for``),
batched and halved on GPU out-of-memory by the same function a scoring task uses, then the
version's calibration and the 1-5 clip. Inputs are built in memory and go to
``scorer.score`` directly, so the feature cache never sees a corrupted image or a perturbed
text, and no prediction is stored. Corrupted and neutral images are files made once per
image, corruption, severity and seed under ``MEDIA_ROOT/probe-cache``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from annotation.dataset.export.service import dataset_export_create
from annotation.dataset.format import iter_export
from annotation.models import DatasetExport
from modelloop import services as modelloop_services
from modelloop.models import ModelVersion
from modelloop.scoring import ScoringInput
from modelloop.services.scoring import _score_in_batches  # the worker's batching (halved on OOM)
from morale import jobs

from ..metrics import json_ready
from ..models import ProbeResult, ProbeRun
from . import corruptions, figures, text

logger = logging.getLogger(__name__)

MODALITY_LABELS = ("text", "image", "both")


class ProbeError(ValueError):
    """The probe cannot run: no contexts, a bad option, a version that cannot be loaded."""


@dataclass(frozen=True)
class ProbePair:
    scenario_id: int
    context_id: int
    image_path: str
    image_sha256: str
    setting: str
    text: str
    human_mean: float
    modality: str | None  # the majority modality of the human judgments
    text_only_label: int | None  # NormBank -1 / 0 / +1 where known
    judgments: tuple[tuple[int, str | None], ...] = ()  # (score, modality) of each human judgment


@dataclass(frozen=True)
class Condition:
    name: str
    kind: str  # clean | corruption | text | persuasion | neutral_image | no_setting
    corruption: str = ""
    severity: int = 0
    perturbation: str = ""
    direction: int = 0  # persuasion: +1 toward acceptable, -1 toward unacceptable


def conditions_for(suite: str) -> list[Condition]:
    """Every condition a probe scores, clean first."""
    out = [Condition("clean", "clean")]
    out += [Condition(f"{c}@{s}", "corruption", corruption=c, severity=s) for c, s in corruptions.suite(suite)]
    out += [Condition(f"text:{name}", "text", perturbation=name) for name in text.MEANING_PRESERVING]
    out += [
        Condition(f"persuasion:{name}", "persuasion", perturbation=name, direction=direction)
        for name, (_, direction) in text.PERSUASION.items()
    ]
    out += [Condition("neutral_image", "neutral_image"), Condition("no_setting", "no_setting")]
    return out


def pairs_from_export(path: str, *, split: str = "test", max_contexts: int | None = None) -> list[ProbePair]:
    """The export's scenarios with their image, setting, human mean and modality labels.

    ``split``: ``test`` (default), ``train`` or ``all``; ``max_contexts``: the first N contexts
    (in the export's order) of that split.
    """
    if split not in ("test", "train", "all"):
        raise ProbeError(f"split must be test, train or all, got {split!r}")
    if max_contexts is not None and max_contexts < 1:
        raise ProbeError(f"--contexts must be at least 1, got {max_contexts}")
    pairs: list[ProbePair] = []
    contexts = 0
    for record in iter_export(path):
        if split != "all" and record["split"] != split:
            continue
        if max_contexts is not None and contexts >= max_contexts:
            break
        contexts += 1
        image_path = default_storage.path(record["image_path"])
        for s in record["scenarios"]:
            pairs.append(
                ProbePair(
                    scenario_id=s["scenario_id"],
                    context_id=record["context_id"],
                    image_path=image_path,
                    image_sha256=record["image_sha256"],
                    setting=record["setting"],
                    text=s["text"],
                    human_mean=float(s["mean"]),
                    modality=s["majority_modality"],
                    text_only_label=s.get("text_only_label"),
                    judgments=tuple((j["score"], j["modality"]) for j in s["judgments"]),
                )
            )
    return pairs


def cache_dir() -> Path:
    return Path(settings.MEDIA_ROOT) / "probe-cache"


def inputs_for(condition: Condition, pairs: Sequence[ProbePair], *, seed: int, folder: Path) -> list[ScoringInput]:
    """The scorer inputs of the pairs under one condition (images made once, then read from ``folder``)."""
    images: dict[str, str] = {}

    def image(pair: ProbePair) -> str:
        if condition.kind not in ("corruption", "neutral_image"):
            return pair.image_path
        if pair.image_path not in images:
            try:
                if condition.kind == "corruption":
                    made = corruptions.cached_corruption(
                        folder, pair.image_path, pair.image_sha256, condition.corruption, condition.severity, seed=seed
                    )
                else:
                    made = corruptions.cached_neutral(folder, pair.image_path, pair.image_sha256)
                images[pair.image_path] = str(made)
            except corruptions.CorruptionError:
                images[pair.image_path] = pair.image_path + ".unreadable"  # the scorer reports the pair failed
        return images[pair.image_path]

    out = []
    for pair in pairs:
        setting, scenario = pair.setting, pair.text
        if condition.kind in ("text", "persuasion"):
            scenario = text.perturb(condition.perturbation, pair.text, seed=seed, scenario_id=pair.scenario_id)
        elif condition.kind == "no_setting":
            setting = ""
        out.append(ScoringInput(pair.scenario_id, image(pair), setting, scenario))
    return out


def score_inputs(version: ModelVersion, scorer, inputs: list[ScoringInput]) -> np.ndarray:
    """Scores [n] as the worker would store them (calibrated, clipped to 1-5); NaN where a pair failed."""
    results = modelloop_services.calibration_apply(version.calibration, _score_in_batches(scorer, inputs))
    out = np.full(len(inputs), np.nan)
    for row, result in enumerate(results):
        if result.ok and math.isfinite(result.score):
            out[row] = min(5.0, max(1.0, float(result.score)))
    return out


def version_scores(
    version: ModelVersion,
    pairs: Sequence[ProbePair],
    conditions: Sequence[Condition],
    *,
    seed: int,
    folder: Path,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Scores of every condition for one version: condition name -> [n pairs]."""
    scorer = modelloop_services.scorer_for(version)  # ScoringError when it cannot load
    out = {}
    for condition in conditions:
        out[condition.name] = score_inputs(version, scorer, inputs_for(condition, pairs, seed=seed, folder=folder))
        if progress is not None:
            progress(len(pairs))
    return out


# --- figures -----------------------------------------------------------------------------------
def condition_row(condition: Condition, clean: np.ndarray, scores: np.ndarray, pairs: Sequence[ProbePair]) -> dict:
    human = np.array([p.human_mean for p in pairs])
    lists = [p.context_id for p in pairs]
    return {
        "name": condition.name,
        "kind": condition.kind,
        "corruption": condition.corruption,
        "severity": condition.severity,
        "n": int(np.isfinite(scores).sum()),
        "failed": int((~np.isfinite(scores)).sum()),
        "flip_rate": figures.flip_rate(clean, scores),
        "mean_abs_shift": figures.mean_abs_shift(clean, scores),
        "mean_shift": figures.mean_shift(clean, scores),
        "kendall_tau": figures.kendall_within_lists(clean, scores, lists),
        "error": figures.error(scores, human),
        "safety_error": figures.safety_error(scores, human),
    }


def _pooled(clean: np.ndarray, perturbed: list[np.ndarray], fn) -> float:
    """``fn`` over every (pair, condition) of these conditions together."""
    if not perturbed:
        return math.nan
    return fn(np.concatenate([clean] * len(perturbed)), np.concatenate(perturbed))


def version_figures(
    scores: dict[str, np.ndarray],
    pairs: Sequence[ProbePair],
    conditions: Sequence[Condition],
    *,
    reference_errors: dict[tuple[str, int], float] | None = None,
) -> dict:
    """Every figure of one version from its scores (``reference_errors``: the reference's
    corrupted errors by (corruption, severity), the normaliser of CE; None: no CE)."""
    clean = scores["clean"]
    rows = [condition_row(c, clean, scores[c.name], pairs) for c in conditions]
    by_kind = lambda *kinds: [scores[c.name] for c in conditions if c.kind in kinds]  # noqa: E731
    errors = {(c.corruption, c.severity): row["error"] for c, row in zip(conditions, rows) if c.kind == "corruption"}
    by_corruption: dict[str, dict[str, float]] = {}
    for (corruption, severity), value in errors.items():
        by_corruption.setdefault(corruption, {})[str(severity)] = value
    ce = figures.corruption_errors(errors, reference_errors) if reference_errors is not None else None
    mce = figures.mean_corruption_error(ce) if ce is not None else None
    persuasion = {c.direction: scores[c.name] for c in conditions if c.kind == "persuasion"}
    return {
        "n_pairs": len(pairs),
        "n_contexts": len({p.context_id for p in pairs}),
        "clean": rows[0] | {"failed": int((~np.isfinite(clean)).sum())},
        "conditions": rows,
        "flip_rate": _pooled(clean, by_kind("corruption", "text"), figures.flip_rate),
        "flip_rate_image": _pooled(clean, by_kind("corruption"), figures.flip_rate),
        "flip_rate_text": _pooled(clean, by_kind("text"), figures.flip_rate),
        "mean_abs_shift": _pooled(clean, by_kind("corruption", "text"), figures.mean_abs_shift),
        "kendall_tau": _mean_defined([r["kendall_tau"] for r in rows if r["kind"] in ("corruption", "text")]),
        "corruption": {
            "errors": by_corruption,
            "unnormalised_ce": {c: _mean_defined(list(v.values())) for c, v in by_corruption.items()},
            "ce": ce,
            "mce": mce,
        },
        "persuasion": figures.persuasion_sensitivity(clean, persuasion.get(+1, clean * np.nan), persuasion.get(-1, clean * np.nan)),
        "modality": modality_figures(scores, pairs),
    }


def _mean_defined(values: list[float]) -> float:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def modality_figures(scores: dict[str, np.ndarray], pairs: Sequence[ProbePair]) -> dict:
    """Image reliance (grey image), setting reliance (setting removed), overall and per human modality label."""
    clean, grey, bare = scores["clean"], scores["neutral_image"], scores["no_setting"]

    def block(rows: np.ndarray) -> dict:
        return {
            "n": int(rows.sum()),
            "image_reliance": figures.reliance(clean[rows], grey[rows]),
            "setting_reliance": figures.reliance(clean[rows], bare[rows]),
            "neutral_image_abs_shift": figures.mean_abs_shift(clean[rows], grey[rows]),
            "no_setting_abs_shift": figures.mean_abs_shift(clean[rows], bare[rows]),
        }

    labels = np.array([p.modality or "unknown" for p in pairs])
    return block(np.ones(len(pairs), dtype=bool)) | {
        "by_human_modality": {
            label: block(labels == label) for label in (*MODALITY_LABELS, "unknown") if (labels == label).any()
        }
    }


def human_modality_figures(pairs: Sequence[ProbePair]) -> dict:
    """The humans' own figures beside the model's image reliance: the share of judgments
    labelled image or both, and per label the share of judgments outside their scenario's
    text-only label side and the mean signed shift (``figures.text_only_shift``)."""
    judgments = [(score, modality, p.text_only_label) for p in pairs for score, modality in p.judgments]
    labelled = [j for j in judgments if j[1] is not None]
    out = {
        "n_judgments": len(judgments),
        "share_image_or_both": (
            sum(m in ("image", "both") for _, m, _ in labelled) / len(labelled) if labelled else None
        ),
        "by_modality": {},
    }
    for label in MODALITY_LABELS:
        mine = [j for j in labelled if j[1] == label]
        with_label = [(s, t) for s, _, t in mine if t in (-1, 0, 1)]
        shifts = [figures.text_only_shift(s, t) for s, t in with_label]
        out["by_modality"][label] = {
            "n_judgments": len(mine),
            "share": len(mine) / len(labelled) if labelled else None,
            "n_with_text_only_label": len(with_label),
            "diverging_from_text_only": sum(s != 0 for s in shifts) / len(shifts) if shifts else None,
            "mean_text_only_shift": sum(shifts) / len(shifts) if shifts else None,
        }
    return out


# --- runs (writes) -----------------------------------------------------------------------------
def probe_run_create(
    *,
    model_version: ModelVersion,
    against: ModelVersion | None = None,
    suite: str = "pilot",
    split: str = "test",
    max_contexts: int | None = None,
    seed: int = 0,
    export: DatasetExport | None = None,
) -> ProbeRun:
    """Record a queued probe run; ProbeError for a bad option (nothing is written then)."""
    if suite not in ProbeRun.Suite.values:
        raise ProbeError(f"suite must be pilot or full, got {suite!r}")
    if split not in ("test", "train", "all"):
        raise ProbeError(f"split must be test, train or all, got {split!r}")
    if max_contexts is not None and max_contexts < 1:
        raise ProbeError(f"the number of contexts must be at least 1, got {max_contexts}")
    if against is not None and against.pk == model_version.pk:
        raise ProbeError("a version cannot be probed against itself")
    if export is not None and (export.status != DatasetExport.Status.DONE or export.format not in ("jsonl", "parquet")):
        raise ProbeError(f"{export} is not a finished JSONL or Parquet export")
    return ProbeRun.objects.create(
        model_version=model_version, against=against, suite=suite, split=split,
        max_contexts=max_contexts, seed=seed, export=export,
    )


def _latest_export() -> DatasetExport:
    export = (
        DatasetExport.objects.filter(status=DatasetExport.Status.DONE, format__in=["jsonl", "parquet"])
        .order_by("-id")
        .first()
    )
    return export or dataset_export_create(fmt="jsonl")


def _send(run_id: int) -> None:
    from .. import tasks

    tasks.probe_version.apply_async(args=[run_id])


# A probe whose worker died is failed with the reason (re-running it is a new run: its
# results are written at the end, one per version); a queued run whose message was lost is
# sent again.
PROBE_JOB = jobs.JobKind(name="probe run", model=ProbeRun, send=_send, done=ProbeRun.Status.SUCCEEDED, resumable=None)


def probe_runs_sweep(now=None) -> dict:
    """The sweep of probe runs (``morale.jobs.sweep``), beside the training runs' one."""
    return jobs.sweep(PROBE_JOB, now=now)


def probe_run_execute(*, run_id: int, progress: Callable[[int, int], None] | None = None) -> ProbeRun:
    """Run a queued probe to the end: it ends succeeded (with its results) or failed (with the reason).

    Claimed through ``morale.jobs`` (one conditional UPDATE); a run that is not queued
    (delivered twice, or taken by another worker) is returned as it is stored.
    """
    run = jobs.claim(PROBE_JOB, run_id, started_at=timezone.now())
    if run is not None:
        try:
            _execute(run, progress)
        except jobs.JobLost as exc:  # the sweep failed it meanwhile (silent too long): write nothing
            logger.warning("probe run #%s abandoned: %s", run_id, exc)
        except Exception as exc:  # noqa: BLE001 - every failure ends the run with its reason
            logger.exception("probe run #%s failed", run_id)
            jobs.fail(PROBE_JOB, run, f"{type(exc).__name__}: {exc}"[:10_000])
    return ProbeRun.objects.select_related("model_version", "against", "export").get(pk=run_id)


def _execute(run: ProbeRun, progress: Callable[[int, int], None] | None) -> None:
    started = time.monotonic()
    if run.export is None:
        jobs.write(PROBE_JOB, run, export=_latest_export())
    pairs = pairs_from_export(run.export.file.path, split=run.split, max_contexts=run.max_contexts)
    if not pairs:
        raise ProbeError(f"{run.export} has no scenario in its {run.split} split to probe")
    conditions = conditions_for(run.suite)
    versions = [run.model_version] + ([run.against] if run.against else [])
    total = len(versions) * len(conditions) * len(pairs)
    jobs.write(PROBE_JOB, run, n_pairs=len(pairs), n_contexts=len({p.context_id for p in pairs}))
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        jobs.write(PROBE_JOB, run, progress=min(1.0, done / total))
        if progress is not None:
            progress(done, total)

    folder = cache_dir()
    scores = {v.pk: version_scores(v, pairs, conditions, seed=run.seed, folder=folder, progress=step) for v in versions}
    reference_errors = None
    if run.against:
        reference_figures = version_figures(scores[run.against.pk], pairs, conditions)
        reference_errors = _corrupted_errors(reference_figures)
    humans = human_modality_figures(pairs)
    results = []
    for version in versions:
        is_reference = version is not run.model_version
        found = version_figures(scores[version.pk], pairs, conditions, reference_errors=reference_errors)
        found["human_modality"] = humans
        results.append((version, is_reference, found))
    mce_of = {is_reference: found["corruption"]["mce"] for _, is_reference, found in results}
    for version, is_reference, found in results:
        rel = figures.relative_mce(mce_of[is_reference], mce_of.get(True)) if run.against else None
        found["corruption"]["rel_mce"] = rel
        ProbeResult.objects.create(
            run=run,
            model_version=version,
            is_reference=is_reference,
            flip_rate=_number(found["flip_rate"]),
            mean_abs_shift=_number(found["mean_abs_shift"]),
            clean_error=_number(found["clean"]["error"]),
            mce=_number(found["corruption"]["mce"]),
            rel_mce=_number(rel),
            persuasion_sensitivity=_number(found["persuasion"]["sensitivity"]),
            image_reliance=_number(found["modality"]["image_reliance"]),
            figures=json_ready(found),
        )
    jobs.finish(
        PROBE_JOB, run, progress=1.0,
        seconds=time.monotonic() - started,
    )


def _corrupted_errors(found: dict) -> dict[tuple[str, int], float]:
    return {
        (corruption, int(severity)): value
        for corruption, by_severity in found["corruption"]["errors"].items()
        for severity, value in by_severity.items()
    }


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
