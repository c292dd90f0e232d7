"""The model registry: registering versions (their files copied into storage) and promoting one.

Exactly one version is current; a promotion switches atomically and queues rescoring of
every scenario (``queue.scoring_enqueue_for_version``).
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..baseline import BUILTIN_NAMES
from ..models import ModelVersion
from ..scoring import LORA_ADAPTER_FILES, FeatureScorer, scorer_registry
from ..selectors import scenario_ids_missing_prediction
from .queue import scoring_enqueue_for_version


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
    """The peft adapter directory as one zip (unpacked on workers by ``loading._adapter_dir``)."""
    missing = [name for name in LORA_ADAPTER_FILES if not (directory / name).is_file()]
    if missing:
        raise ValidationError({"lora_adapter": f"{directory} is not a peft adapter directory: no {', '.join(missing)}."})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # safetensors do not compress
        for name in LORA_ADAPTER_FILES:
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
    scoring_enqueue_for_version(
        model_version=model_version, scenario_ids=scenario_ids_missing_prediction(model_version=model_version)
    )
    return model_version


@transaction.atomic
def model_version_promote_over_baseline(*, model_version: ModelVersion) -> bool:
    """Promote this version only while the built-in baseline (or nothing) is current.

    For automatic promotion (``MORALE_VLM_PATH``): a version a researcher promoted is
    never replaced behind their back. Returns whether it was promoted.
    """
    current = ModelVersion.objects.select_for_update().filter(is_current=True).first()
    if current is not None and (current.pk == model_version.pk or current.name not in BUILTIN_NAMES):
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
