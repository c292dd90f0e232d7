"""Loading a version's scorer: the per-process cache, remembered load failures, LoRA unpacking.

Workers keep the current version (and the one being promoted) warm; a version that fails
to load is reported once, stored on the row (``load_error``) and not retried for a while.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from ..models import ModelVersion, validate_calibration
from ..scoring import LORA_ADAPTER_FILES, FeatureScorer, Scorer, ScoringError, scorer_registry

logger = logging.getLogger(__name__)

# A version that failed to load is not tried again in this process for this long, so a
# queue full of its tasks drains quickly instead of re-reading a broken checkpoint each time.
LOAD_RETRY_SECONDS = 60.0
# Loaded scorers kept per process: the current version and the one being promoted. An
# unbounded cache would pin every old model in (GPU) memory across promotions.
_MAX_LOADED = 2

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


def scorer_cache_clear() -> None:
    """Forget every loaded scorer and remembered load failure, as in a new worker process (tests)."""
    with _scorer_lock:
        _scorers.clear()
        _load_failures.clear()


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
    The zip is written by ``registry._zip_adapter``.
    """
    with field_file.open("rb") as handle:
        data = handle.read()
    root = Path(settings.VAR_DIR) / "lora_adapters"
    target = root / hashlib.sha256(data).hexdigest()[:16]
    if all((target / name).is_file() for name in LORA_ADAPTER_FILES):
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".unpack-"))
    try:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for name in LORA_ADAPTER_FILES:
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
