"""Model versions, predictions, the feature cache and the queueing of scoring work.

Scoring itself runs in Celery workers (``modelloop.tasks``); the web process only reads
predictions and queues work after commit. A broker that is down never fails a web
request: the enqueue is logged and the periodic sweeper re-queues what has no score.
torch and numpy are imported inside the functions that need them: web processes import
this module too and never score.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import shutil
import struct
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from .baseline import BASELINE_NAME
from .models import FeatureCacheEntry, ModelVersion, Prediction, validate_calibration
from .scoring import FeatureScorer, Scorer, ScoringError, ScoringInput, ScoringResult, scorer_registry
from .selectors import (  # noqa: F401 - re-exported: callers read these through services
    NoCurrentModelVersion,
    model_version_current,
    model_version_current_or_none,
    predictions_for,
    scenario_ids_missing_prediction,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

OUT_OF_MEMORY = "out of GPU memory even at batch size 1"
# A task whose features are all cached only runs the small head: thousands of pairs per
# task make a full rescore (MM-SCALE: 32k scenarios) a few tasks instead of a thousand.
CACHED_CHUNK_SIZE = 4096
# Scenario ids per query in cached_features: below SQLite's limit of 32766 variables.
_IDS_PER_QUERY = 10_000
# A version that failed to load is not tried again in this process for this long, so a
# queue full of its tasks drains quickly instead of re-reading a broken checkpoint each time.
LOAD_RETRY_SECONDS = 60.0
# Loaded scorers kept per process: the current version and the one being promoted. An
# unbounded cache would pin every old model in (GPU) memory across promotions.
_MAX_LOADED = 2
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


# --- loading scorers ------------------------------------------------------------------------
_scorers: OrderedDict[tuple, Scorer] = OrderedDict()
_load_failures: dict[tuple, tuple[str, float]] = {}
_scorer_lock = threading.Lock()


def _scorer_key(version: ModelVersion) -> tuple:
    """Everything a loaded scorer depends on: an edited config or new weights load afresh."""
    return (
        version.pk,
        version.scorer,
        json.dumps(version.config, sort_keys=True),
        version.head_weights.name or "",
        version.lora_adapter.name or "",
    )


def scorer_for(model_version: ModelVersion) -> Scorer:
    """The loaded scorer of a version, built once per process (workers keep it warm).

    Raises ScoringError with a readable reason when the version cannot be loaded (missing
    or broken model directory, bad weights, unknown scorer key, ...). The reason is logged
    once and stored on the version (``load_error``, shown in the admin); for
    ``LOAD_RETRY_SECONDS`` this process answers from memory instead of loading again.
    """
    from celery.exceptions import SoftTimeLimitExceeded

    key = _scorer_key(model_version)
    with _scorer_lock:
        scorer = _scorers.get(key)
        if scorer is not None:
            _scorers.move_to_end(key)
            return scorer
        failure = _load_failures.get(key)
        if failure is not None and time.monotonic() - failure[1] < LOAD_RETRY_SECONDS:
            raise ScoringError(failure[0])
        try:
            scorer = _build_scorer(model_version)
        except SoftTimeLimitExceeded:
            raise  # the task ran out of time; nothing is wrong with the version
        except Exception as exc:  # noqa: BLE001 - any load failure must leave the worker running
            reason = str(exc) if isinstance(exc, ScoringError) else f"{type(exc).__name__}: {exc}"
            error = f"model version {model_version.name!r} (scorer {model_version.scorer!r}) cannot be loaded: {reason}"
            _load_failures[key] = (error, time.monotonic())
        else:
            error = ""
            _load_failures.pop(key, None)
            _scorers[key] = scorer
            while len(_scorers) > _MAX_LOADED:
                _scorers.popitem(last=False)
    if error:
        logger.error("%s. Its scenarios stay unscored until this is fixed; the worker keeps running.", error)
        _record_load(model_version, error=error)
        raise ScoringError(error)
    backbone_ref = scorer.backbone_ref if isinstance(scorer, FeatureScorer) else ""
    logger.info("Loaded model version %r%s.", model_version.name, f" (backbone {backbone_ref})" if backbone_ref else "")
    _record_load(model_version, error="", backbone_ref=backbone_ref)
    return scorer


def _build_scorer(version: ModelVersion) -> Scorer:
    registry = scorer_registry()
    if version.scorer not in registry:
        raise ScoringError(f"unknown scorer {version.scorer!r}; known: {', '.join(sorted(registry))}")
    try:
        validate_calibration(version.calibration)  # rows written around model validation, e.g. by a script
    except ValidationError as exc:
        raise ScoringError(f"bad calibration {version.calibration!r}: {' '.join(exc.messages)}") from None
    config = dict(version.config)
    if version.lora_adapter:
        config["lora_adapter_path"] = str(_adapter_dir(version.lora_adapter))
    head_path = version.head_weights.path if version.head_weights else None
    return registry[version.scorer](config=config, head_weights_path=head_path)


def _adapter_dir(field_file) -> Path:
    """The version's LoRA zip unpacked into a local folder named by its content.

    Named by content, so every host unpacks the same adapter to a folder of the same name
    (the HF scorer's backbone_ref includes it) and a second process reuses the folder.
    """
    with field_file.open("rb") as handle:
        data = handle.read()
    root = Path(settings.VAR_DIR) / "lora_adapters"
    target = root / hashlib.sha256(data).hexdigest()[:16]
    if all((target / name).is_file() for name in _ADAPTER_FILES):
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".unpack-"))
    try:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for name in _ADAPTER_FILES:
                    (staging / name).write_bytes(archive.read(name))
        except KeyError as exc:
            raise ScoringError(f"LoRA adapter {field_file.name} lacks a file: {exc}") from None
        except zipfile.BadZipFile as exc:
            raise ScoringError(f"LoRA adapter {field_file.name} is not a zip file: {exc}") from None
        try:
            staging.rename(target)  # atomic; another process may have won the race
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _record_load(version: ModelVersion, *, error: str, backbone_ref: str = "") -> None:
    fields: dict = {"load_error": error, "load_checked_at": timezone.now()}
    if backbone_ref:
        fields["backbone_ref"] = backbone_ref
    ModelVersion.objects.filter(pk=version.pk).update(**fields)
    for name, value in fields.items():
        setattr(version, name, value)


# --- feature cache ------------------------------------------------------------------------
def content_key(image_sha256: str, setting: str, text: str) -> str:
    """What a cached feature vector was computed from: stale once the image, setting or text change."""
    return hashlib.sha256(json.dumps([image_sha256, setting, text]).encode()).hexdigest()


def cached_features(backbone_ref: str, scenario_ids: Sequence[int], dim: int) -> tuple[list[int], np.ndarray]:
    """The cached, still valid ``dim``-d vectors of these scenarios: (scenario ids, float32 [k, dim]).

    Built for bulk reads (a full rescore reads every scenario): no model instances, one
    ``frombuffer`` over the joined bytes. Stale entries (content changed) and scenarios
    without an entry are left out. Rows come from ``_cache_rows``.
    """
    import numpy as np

    found: list[int] = []
    blobs: list[bytes] = []
    nbytes = 4 * dim
    for scenario_id, key, image_sha256, setting, text, vector in _cache_rows(backbone_ref, list(scenario_ids), dim):
        if len(vector) == nbytes and key == content_key(image_sha256, setting, text):
            found.append(scenario_id)
            blobs.append(vector)
    matrix = np.frombuffer(bytearray().join(blobs), dtype="<f4").reshape(len(found), dim)
    return found, matrix.astype(np.float32, copy=False)


def _cache_rows(backbone_ref: str, ids: list[int], dim: int) -> Iterable[tuple[int, str, str, str, str, bytes]]:
    """(scenario id, content key, image sha256, setting, text, vector bytes) of the cache entries.

    PostgreSQL: one binary ``COPY``. Its text protocol sends bytea hex-encoded, and
    decoding that was 1.7 of the 4-5 s a 32k-scenario rescore took; binary COPY reads the
    same rows in 0.5 s. SQLite: ``values_list``, one query per 10,000 ids (its limit on
    query variables).
    """
    if not ids:
        return
    if connection.vendor == "postgresql":
        from annotation.models import Context, Scenario

        cache, scenario, context = (
            connection.ops.quote_name(model._meta.db_table) for model in (FeatureCacheEntry, Scenario, Context)
        )
        # A join with the unnested ids, not "scenario_id = ANY(ids)": with the statistics of
        # a table filled moments ago, the planner filtered every entry of the backbone
        # against the whole id list (0.5 s per 4096 ids).
        sql = (
            f"SELECT c.scenario_id, c.content_key, x.image_sha256, x.setting, s.text, c.vector "
            f"FROM unnest(%s::bigint[]) AS q(id) "
            f"JOIN {cache} c ON c.backbone_ref = %s AND c.dim = %s AND c.scenario_id = q.id "
            f"JOIN {scenario} s ON s.id = c.scenario_id JOIN {context} x ON x.id = s.context_id"
        )
        for scenario_id, *texts, vector in _pg_copy_binary(sql, [ids, backbone_ref, dim]):
            key, image_sha256, setting, text = (str(value, "utf-8") for value in texts)
            yield int.from_bytes(scenario_id, "big", signed=True), key, image_sha256, setting, text, vector
        return
    for start in range(0, len(ids), _IDS_PER_QUERY):
        yield from FeatureCacheEntry.objects.filter(
            backbone_ref=backbone_ref, dim=dim, scenario_id__in=ids[start : start + _IDS_PER_QUERY]
        ).values_list(
            "scenario_id",
            "content_key",
            "scenario__context__image_sha256",
            "scenario__context__setting",
            "scenario__text",
            "vector",
        )


def _pg_copy_binary(sql: str, params: list) -> Iterable[tuple[memoryview, ...]]:
    """The rows of ``COPY (sql) TO STDOUT (FORMAT binary)``, each field as raw bytes.

    The format (PostgreSQL docs, "COPY", binary format): an 11-byte signature, a 4-byte
    flags field and a 4-byte header-extension length, then per row a 16-bit field count
    and per field a 32-bit length (-1 for NULL; the queries here select no NULLs) and the
    value in the type's binary send format (bigint: 8 bytes big-endian; text and bytea:
    the bytes themselves); a field count of -1 ends the data.
    """
    buffer = io.BytesIO()
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg2's cursor under Django's wrapper: copy_expert is not wrapped
        raw.copy_expert(raw.mogrify(f"COPY ({sql}) TO STDOUT (FORMAT binary)", params).decode(), buffer)
    data = buffer.getbuffer()
    (extension,) = struct.unpack_from(">i", data, 15)
    pos = 19 + extension
    while True:
        (count,) = struct.unpack_from(">h", data, pos)
        pos += 2
        if count == -1:
            return
        fields = []
        for _ in range(count):
            (length,) = struct.unpack_from(">i", data, pos)
            pos += 4
            fields.append(data[pos : pos + length])
            pos += length
        yield tuple(fields)


def _cache_store(backbone_ref: str, rows: Sequence[tuple[int, str, torch.Tensor]]) -> None:
    """Upsert (scenario id, content key, vector) rows; a stale entry is overwritten."""
    entries = [
        FeatureCacheEntry(
            backbone_ref=backbone_ref,
            scenario_id=scenario_id,
            content_key=key,
            dim=vector.numel(),
            vector=vector.detach().float().cpu().numpy().astype("<f4").tobytes(),
        )
        for scenario_id, key, vector in rows
    ]
    if entries:
        FeatureCacheEntry.objects.bulk_create(
            entries,
            update_conflicts=True,
            unique_fields=["backbone_ref", "scenario"],
            update_fields=["content_key", "dim", "vector", "computed_at"],
        )


def features_for(scorer: FeatureScorer, scenario_ids: Sequence[int]) -> tuple[torch.Tensor, list[str]]:
    """Backbone features [n, feature_dim] of these scenarios and one error per id ("" when fine).

    ``scorer`` needs only ``backbone_ref``, ``feature_dim`` and ``features()``: training
    passes a bare backbone (``offline.EfficientNetMiniLMBackbone``) before any head exists.

    Cached vectors are read in bulk; the rest go through ``scorer.features`` in batches of
    ``MORALE_SCORER_BATCH_SIZE`` (halved on CUDA out-of-memory) and are cached as each
    batch finishes, so a task cut short by its time limit keeps what it computed. Failed
    pairs are not cached: a fixed image is tried again. An id whose scenario no longer
    exists gets the error ``"scenario not found"``.
    """
    import torch

    ids = list(scenario_ids)
    row_of = {scenario_id: row for row, scenario_id in enumerate(ids)}
    features = torch.zeros(len(ids), scorer.feature_dim)
    errors = ["scenario not found"] * len(ids)
    found, matrix = cached_features(scorer.backbone_ref, ids, scorer.feature_dim)
    if found:
        rows = [row_of[scenario_id] for scenario_id in found]
        features[rows] = torch.from_numpy(matrix)
        for row in rows:
            errors[row] = ""

    hit = set(found)
    pairs = _scoring_pairs([scenario_id for scenario_id in ids if scenario_id not in hit])

    def run(batch: list[tuple[ScoringInput, str]]) -> list[tuple[torch.Tensor | None, str]]:
        values, batch_errors = scorer.features([item for item, _ in batch])
        return list(zip(values, batch_errors))

    for start in range(0, len(pairs), settings.MORALE_SCORER_BATCH_SIZE):
        batch = pairs[start : start + settings.MORALE_SCORER_BATCH_SIZE]
        outputs = _halve_on_oom(run, batch, lambda pair: (None, OUT_OF_MEMORY))
        to_cache = []
        for (item, key), (vector, error) in zip(batch, outputs):
            row = row_of[item.scenario_id]
            errors[row] = error
            if not error:
                features[row] = vector
                to_cache.append((item.scenario_id, key, vector))
        _cache_store(scorer.backbone_ref, to_cache)
    return features, errors


# --- scoring ------------------------------------------------------------------------------
def _scoring_pairs(scenario_ids: Sequence[int]) -> list[tuple[ScoringInput, str]]:
    """(scorer input, content key) of each scenario that exists, in id order."""
    from annotation.models import Scenario

    scenarios = Scenario.objects.filter(pk__in=scenario_ids).select_related("context").order_by("id")
    return [
        (
            ScoringInput(scenario_id=s.pk, image_path=s.context.image.path, setting=s.context.setting, text=s.text),
            content_key(s.context.image_sha256, s.context.setting, s.text),
        )
        for s in scenarios
    ]


def scoring_inputs_for(*, scenario_ids: Sequence[int]) -> list[ScoringInput]:
    return [item for item, _ in _scoring_pairs(scenario_ids)]


def _halve_on_oom(call: Callable[[list[T]], list[R]], batch: list[T], fail_one: Callable[[T], R]) -> list[R]:
    """``call(batch)``; on CUDA out-of-memory, each half again, down to single pairs.

    A pair that does not fit even alone fails by itself (``fail_one``). The retry runs
    outside the ``except`` block so the failed attempt's tensors are freed first.
    """
    import torch

    try:
        return call(batch)
    except torch.cuda.OutOfMemoryError:
        pass
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if len(batch) == 1:
        logger.warning("Out of GPU memory on a single pair; it is marked failed.")
        return [fail_one(batch[0])]
    half = len(batch) // 2
    logger.info("Out of GPU memory at batch size %d; retrying in halves.", len(batch))
    return _halve_on_oom(call, batch[:half], fail_one) + _halve_on_oom(call, batch[half:], fail_one)


def _score_with_features(scorer: FeatureScorer, scenario_ids: Sequence[int]) -> list[ScoringResult]:
    """Head over cached or freshly computed features: a promoted head with a cached backbone never runs it."""
    features, errors = features_for(scorer, scenario_ids)
    ok_rows = [row for row, error in enumerate(errors) if not error]
    scores = scorer.head_scores(features[ok_rows]).tolist() if ok_rows else []
    score_of = dict(zip(ok_rows, scores))
    return [
        ScoringResult(scenario_id, score_of[row]) if not error else ScoringResult(scenario_id, None, error)
        for row, (scenario_id, error) in enumerate(zip(scenario_ids, errors))
        if error != "scenario not found"
    ]


def _score_in_batches(scorer: Scorer, inputs: list[ScoringInput]) -> list[ScoringResult]:
    size = settings.MORALE_SCORER_BATCH_SIZE
    results: list[ScoringResult] = []
    for start in range(0, len(inputs), size):
        results += _halve_on_oom(
            scorer.score, inputs[start : start + size], lambda item: ScoringResult(item.scenario_id, None, OUT_OF_MEMORY)
        )
    return results


def calibration_apply(calibration: dict, results: Sequence[ScoringResult]) -> list[ScoringResult]:
    """Map the scorer's scores through the version's calibration (checked when the scorer
    was loaded, see ``models.validate_calibration``); failed results pass unchanged."""
    method = (calibration or {}).get("method", "builtin")
    if method == "linear":
        slope, intercept = calibration["slope"], calibration["intercept"]

        def mapped(score: float) -> float:
            return slope * score + intercept
    elif method == "isotonic":
        import numpy as np

        x, y = calibration["x"], calibration["y"]

        def mapped(score: float) -> float:
            return float(np.interp(score, x, y))
    else:  # "builtin": the scorer's own 1-5 mapping
        return list(results)
    return [ScoringResult(r.scenario_id, mapped(r.score)) if r.ok else r for r in results]


def predictions_store(*, model_version: ModelVersion, results: Sequence[ScoringResult]) -> int:
    """Write results; a scenario this version already has a prediction for is left alone.

    Idempotent, so a task that is delivered twice (acks_late after a killed worker)
    stores each prediction once. Scores are clipped to 1-5; a NaN or infinite score is
    stored as a failure. Returns the number of results written or kept.

    One SQL statement, not ``bulk_create``: building and preparing 32k model instances
    took longer than the whole head-only rescore they come from (bench/score.py).
    """
    rows = []
    for r in results:
        score = float(r.score) if r.ok else math.nan
        if math.isfinite(score):
            rows.append((r.scenario_id, Prediction.Status.OK.value, min(5.0, max(1.0, score)), ""))
        else:
            error = (r.error or "unknown error") if not r.ok else f"the scorer returned a non-finite score ({r.score})"
            rows.append((r.scenario_id, Prediction.Status.FAILED.value, None, error[:2000]))
    if rows:
        _insert_predictions(model_version.pk, rows)
    return len(rows)


def _insert_predictions(model_version_id: int, rows: list[tuple[int, str, float | None, str]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING of (scenario id, status, score, error) rows.

    PostgreSQL takes the columns as arrays (one statement, one round trip); SQLite runs
    the statement per row inside its C loop (``executemany``), which is as fast in-process.
    """
    table = connection.ops.quote_name(Prediction._meta.db_table)
    columns = "model_version_id, scenario_id, status, score, error, created_at"
    conflict = "ON CONFLICT (model_version_id, scenario_id) DO NOTHING"
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Predictions are derived data: a crash that loses the last commits only leaves
            # scenarios unscored, which the sweeper re-queues. Not waiting for the WAL flush
            # took 0.4 s off a 32k rescore (8 commits) and ~4 ms off every scoring task.
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
            scenario_ids, statuses, scores, errors = (list(column) for column in zip(*rows))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT %s, s, st, sc, e, %s "
                f"FROM unnest(%s::bigint[], %s::varchar[], %s::float8[], %s::text[]) AS t(s, st, sc, e) {conflict}",
                [model_version_id, now, scenario_ids, statuses, scores, errors],
            )
        else:
            cursor.executemany(
                f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s, %s) {conflict}",
                [(model_version_id, *row, now) for row in rows],
            )


def scenarios_score(*, scenario_ids: Sequence[int], model_version: ModelVersion) -> int:
    """Score the scenarios that this version has no prediction for yet; store the results.

    A ``FeatureScorer`` reads cached backbone features and runs the backbone only for the
    rest; other scorers score in batches of ``MORALE_SCORER_BATCH_SIZE``. Either way a
    batch that runs out of GPU memory is split in halves, and a bad pair fails alone.
    Raises ScoringError when the version cannot be loaded (nothing is stored then).
    """
    from annotation.models import Scenario

    todo = list(
        Scenario.objects.filter(pk__in=list(scenario_ids))
        .exclude(predictions__model_version=model_version)
        .order_by("id")
        .values_list("id", flat=True)
    )
    if not todo:
        return 0
    scorer = scorer_for(model_version)
    if isinstance(scorer, FeatureScorer):
        results = _score_with_features(scorer, todo)
    else:
        results = _score_in_batches(scorer, scoring_inputs_for(scenario_ids=todo))
    return predictions_store(model_version=model_version, results=calibration_apply(model_version.calibration, results))


# --- queueing -----------------------------------------------------------------------------
def scoring_enqueue(
    *, scenario_ids: Sequence[int], model_version_id: int | None = None, chunk_size: int | None = None
) -> None:
    """Queue scoring of these scenarios once the current transaction commits.

    One task per ``chunk_size`` scenarios (default ``MORALE_SCORER_BATCH_SIZE``).
    Never raises: with the broker down the work is logged and left to the sweeper.
    """
    ids = sorted(set(scenario_ids))
    if not ids:
        return

    def _send() -> None:
        from .tasks import score_scenarios

        size = chunk_size or settings.MORALE_SCORER_BATCH_SIZE
        try:
            for start in range(0, len(ids), size):
                score_scenarios.apply_async(
                    kwargs={"scenario_ids": ids[start : start + size], "model_version_id": model_version_id}
                )
        except Exception:  # noqa: BLE001 - any broker failure: the sweeper re-queues later
            logger.warning("Could not queue scoring of %d scenario(s); the sweeper will retry.", len(ids), exc_info=True)

    transaction.on_commit(_send)


def _enqueue_for_version(version: ModelVersion, scenario_ids: Sequence[int]) -> None:
    """Queue these scenarios for ``version``: those with cached features in big head-only chunks."""
    cached: set[int] = set()
    if version.backbone_ref:
        cached = set(
            FeatureCacheEntry.objects.filter(backbone_ref=version.backbone_ref).values_list("scenario_id", flat=True)
        )
    scoring_enqueue(
        scenario_ids=[i for i in scenario_ids if i in cached], model_version_id=version.pk, chunk_size=CACHED_CHUNK_SIZE
    )
    scoring_enqueue(scenario_ids=[i for i in scenario_ids if i not in cached], model_version_id=version.pk)


@transaction.atomic
def scenarios_rescore(*, scenario_ids: Sequence[int]) -> int:
    """Score these scenarios again with the current version (admin action, API).

    Drops the current version's predictions of them (failed ones included) and queues
    them once the transaction commits; until a worker has scored them, grounding checks on
    them wait as for a new scenario. Returns how many were queued (0: no current version).
    """
    version = model_version_current_or_none()
    ids = sorted(set(scenario_ids))
    if version is None or not ids:
        return 0
    Prediction.objects.filter(model_version=version, scenario_id__in=ids).delete()
    _enqueue_for_version(version, ids)
    return len(ids)


def unscored_sweep(*, limit: int = 5000) -> int:
    """Re-queue scenarios that the current version has not scored (e.g. the broker was down)."""
    version = model_version_current_or_none()
    if version is None:
        return 0
    ids = scenario_ids_missing_prediction(model_version=version, limit=limit)
    _enqueue_for_version(version, ids)
    return len(ids)


# --- versions -----------------------------------------------------------------------------
def model_version_register(
    *,
    name: str,
    scorer: str,
    config: dict,
    head_weights_path: str | os.PathLike[str] | None = None,
    lora_adapter_dir: str | os.PathLike[str] | None = None,
    calibration: dict | None = None,
    description: str = "",
    backbone_ref: str = "",
) -> ModelVersion:
    """Record a scorer as a new (not yet current) version, copying its files into storage.

    The head weights (safetensors) and the LoRA adapter (a peft adapter directory, stored
    as one zip) are copied into the default storage, so every worker host reads the same
    files. ``backbone_ref`` names the frozen backbone whose cached features the head was
    trained on; it lets a promotion rescore head-only in big chunks before any worker has
    loaded the version (scorers with a fixed backbone, like efficientnet-minilm-mlp, fill
    it themselves; otherwise the first load does).
    """
    registry = scorer_registry()
    if scorer not in registry:
        raise ValidationError({"scorer": f"Unknown scorer {scorer!r}; choose one of {sorted(registry)}."})
    if not backbone_ref and issubclass(registry[scorer], FeatureScorer):
        backbone_ref = getattr(registry[scorer], "backbone_ref", "")  # a class attribute when fixed
    version = ModelVersion(
        name=name,
        scorer=scorer,
        description=description,
        config=config,
        calibration=calibration or {},
        backbone_ref=backbone_ref,
    )
    version.full_clean()  # before any file is copied: a refused version leaves nothing behind
    if lora_adapter_dir is not None:
        version.lora_adapter.save(f"{name}-lora.zip", ContentFile(_zip_adapter(Path(lora_adapter_dir))), save=False)
    if head_weights_path is not None:
        with open(head_weights_path, "rb") as handle:
            version.head_weights.save(f"{name}-head.safetensors", File(handle), save=False)
    version.save()
    return version


def _zip_adapter(directory: Path) -> bytes:
    missing = [name for name in _ADAPTER_FILES if not (directory / name).is_file()]
    if missing:
        raise ValidationError({"lora_adapter": f"{directory} is not a peft adapter directory: no {', '.join(missing)}."})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # safetensors do not compress
        for name in _ADAPTER_FILES:
            archive.write(directory / name, arcname=name)
    return buffer.getvalue()


def model_version_create(
    *, name: str, scorer: str, description: str = "", config: dict | None = None
) -> ModelVersion:
    """A version without files (e.g. a zero-shot scorer with another config)."""
    return model_version_register(name=name, scorer=scorer, config=config or {}, description=description)


@transaction.atomic
def model_version_promote(*, model_version: ModelVersion) -> ModelVersion:
    """Make this version the current one and queue scoring of every scenario with it.

    The switch is one transaction: the old current row is cleared and the new one set
    while the row locks are held, so readers see exactly one current version. Scenarios
    whose backbone features are cached go out in head-only chunks of CACHED_CHUNK_SIZE.
    """
    # Lock both rows so that two promotions queue up instead of interleaving.
    list(ModelVersion.objects.select_for_update().filter(Q(pk=model_version.pk) | Q(is_current=True)))
    ModelVersion.objects.filter(is_current=True).exclude(pk=model_version.pk).update(is_current=False)
    ModelVersion.objects.filter(pk=model_version.pk).update(is_current=True, promoted_at=timezone.now())
    model_version.refresh_from_db()
    _enqueue_for_version(model_version, scenario_ids_missing_prediction(model_version=model_version))
    return model_version


@transaction.atomic
def model_version_promote_over_baseline(*, model_version: ModelVersion) -> bool:
    """Promote this version only while the built-in baseline (or nothing) is current.

    For automatic promotion (``MORALE_VLM_PATH``): a version a researcher promoted is
    never replaced behind their back. Returns whether it was promoted.
    """
    current = ModelVersion.objects.select_for_update().filter(is_current=True).first()
    if current is not None and (current.pk == model_version.pk or current.name != BASELINE_NAME):
        return False
    model_version_promote(model_version=model_version)
    return True


def model_version_for_vlm_path(path: str) -> ModelVersion:
    """The "hf-vlm-zero-shot" version reading the checkpoint at ``path``, registered once.

    Its name is derived from the path, so every worker started with the same
    ``MORALE_VLM_PATH`` finds the same row (the unique name settles races).
    """
    directory = os.path.abspath(os.path.expanduser(path))
    digest = hashlib.sha256(directory.encode()).hexdigest()[:8]
    name = f"vlm-zero-shot-{os.path.basename(directory.rstrip(os.sep))[:60]}-{digest}"
    version, _ = ModelVersion.objects.get_or_create(
        name=name,
        defaults={
            "scorer": "hf-vlm-zero-shot",
            "config": {"backbone_path": directory},
            "description": (
                f"Zero-shot rating by the VLM checkpoint in {directory} (registered from MORALE_VLM_PATH): "
                "the expected digit of its 1-5 answer. No training."
            ),
        },
    )
    return version
