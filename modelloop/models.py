"""Model versions (scorers), their predictions, and the feature cache of frozen backbones.

Imported by modelloop, training and annotation.research; it names annotation.Scenario by string only.
"""

import hashlib
import json
import math

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

# How a version's raw scorer output is mapped onto the 1-5 scale, see validate_calibration.
CALIBRATION_METHODS = ("builtin", "linear", "isotonic")


def validate_calibration(value) -> None:
    """Refuse a calibration that ``services.scoring.calibration_apply`` could not apply.

    - ``{}`` or ``{"method": "builtin"}``: the scorer's own mapping to 1-5 is used as is
      (``1 + 4 * sigmoid`` for the MLP heads, the expected digit for the VLM zero-shot,
      ``3 + 2 * tanh`` for the text baseline).
    - ``{"method": "linear", "slope": a, "intercept": b}``: ``a * score + b``.
    - ``{"method": "isotonic", "x": [...], "y": [...]}``: piecewise-linear through the
      fitted points (x increasing, y non-decreasing), flat beyond the ends.
    Results are clipped to [1, 5] either way.
    """
    if not isinstance(value, dict):
        raise ValidationError("Calibration must be a JSON object.")
    method = value.get("method", "builtin") if value else "builtin"
    if method not in CALIBRATION_METHODS:
        raise ValidationError(f"Calibration method {method!r} is not one of {', '.join(CALIBRATION_METHODS)}.")

    def number(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    if method == "linear" and not (number(value.get("slope")) and number(value.get("intercept"))):
        raise ValidationError("Linear calibration needs finite numbers 'slope' and 'intercept'.")
    if method == "isotonic":
        x, y = value.get("x"), value.get("y")
        if not (isinstance(x, list) and isinstance(y, list) and len(x) == len(y) >= 2):
            raise ValidationError("Isotonic calibration needs lists 'x' and 'y' of equal length (at least 2).")
        if not all(number(v) for v in x + y):
            raise ValidationError("Isotonic calibration points must be finite numbers.")
        if any(b <= a for a, b in zip(x, x[1:])) or any(b < a for a, b in zip(y, y[1:])):
            raise ValidationError("Isotonic calibration needs x strictly increasing and y non-decreasing.")


class ModelVersion(models.Model):
    """A scorer: which implementation, its weights and config, and whether it is current.

    Exactly one version is current. The database refuses a second current row (partial
    unique index); ``modelloop.services.registry.model_version_promote`` switches atomically, and
    migration 0002 creates the first current version, the zero-shot baseline.
    Files (head weights, LoRA adapter) live in the default storage (``MEDIA_ROOT``), which
    every worker host shares; ``services.registry.model_version_register`` copies them there.
    """

    name = models.CharField(max_length=100, unique=True)
    scorer = models.CharField(
        max_length=64, help_text="Scorer implementation key, see modelloop.scoring.scorer_registry()."
    )
    description = models.TextField(blank=True, help_text="What this version is, shown in the admin.")
    config = models.JSONField(default=dict, blank=True)
    backbone_ref = models.CharField(
        max_length=200,
        blank=True,
        help_text="The frozen backbone's reference (weights + preprocessing); names its cached features. "
        "Filled when a worker first loads the version.",
    )
    head_weights = models.FileField(upload_to="model_versions/", blank=True)
    # A zip of a peft adapter directory (adapter_config.json + adapter_model.safetensors):
    # one file, so it goes through the storage API like the head weights and reaches every
    # worker host; workers unpack it once into a local folder (services.loading._adapter_dir).
    lora_adapter = models.FileField(
        upload_to="model_versions/", blank=True, help_text="LoRA adapter (zip of a peft adapter directory), if any."
    )
    calibration = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_calibration],
        help_text='Mapping of the scorer\'s output to 1-5: {} (the scorer\'s own), '
        '{"method": "linear", "slope": a, "intercept": b} or {"method": "isotonic", "x": [...], "y": [...]}.',
    )
    metrics = models.JSONField(default=dict, blank=True)
    is_current = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    # Written by workers: why the last attempt to load this version failed ("" = it loaded).
    load_error = models.TextField(blank=True)
    load_checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_current"], condition=Q(is_current=True), name="model_version_single_current"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}{' (current)' if self.is_current else ''}"


class Prediction(models.Model):
    """One version's score for one scenario (in its context's image), or why it failed."""

    class Status(models.TextChoices):
        OK = "ok", "scored"
        FAILED = "failed", "failed"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="predictions")
    scenario = models.ForeignKey("annotation.Scenario", on_delete=models.CASCADE, related_name="predictions")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OK)
    score = models.FloatField(null=True, blank=True, help_text="Calibrated to the 1-5 scale.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["model_version", "scenario"], name="prediction_once_per_version"),
            models.CheckConstraint(
                condition=Q(status="ok", score__gte=1, score__lte=5)
                | Q(status="failed", score__isnull=True),
                name="prediction_score_matches_status",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_version.name} -> #{self.scenario_id}: {self.score}"


def content_key(image_sha256: str, setting: str, text: str) -> str:
    """What a cached feature vector was computed from: stale once the image, setting or text change."""
    return hashlib.sha256(json.dumps([image_sha256, setting, text]).encode()).hexdigest()


class FeatureCacheEntry(models.Model):
    """A frozen backbone's feature vector for one scenario in its context.

    Valid while ``content_key`` still matches the scenario's inputs (see
    ``content_key`` above): editing the text, the setting or the image makes the entry
    stale, and a new ``backbone_ref`` never sees it. In the database, not on a worker's
    disk, so every worker host and the training app read the same cache.

    ``vector`` is little-endian float32: bit-exact with what the backbone produced, so a
    score from the cache equals a freshly computed one; float16 would halve the size but
    round to ~3 significant digits and overflow on the large activations LLM hidden
    states can have (> 65504). 1664-d EfficientNet+MiniLM features are 6.5 KiB a row.
    """

    backbone_ref = models.CharField(max_length=200)
    scenario = models.ForeignKey("annotation.Scenario", on_delete=models.CASCADE, related_name="feature_cache")
    content_key = models.CharField(max_length=64, help_text="sha256 of (image sha256, setting, scenario text).")
    dim = models.PositiveIntegerField()
    vector = models.BinaryField()
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["backbone_ref", "scenario"], name="feature_cache_once_per_backbone"),
        ]

    def __str__(self) -> str:
        return f"{self.backbone_ref} / scenario #{self.scenario_id} ({self.dim}-d)"


class ImageFeatureCacheEntry(models.Model):
    """A frozen image backbone's feature vector for one image content, beside the pair
    cache (``FeatureCacheEntry``): every scenario of a context shares its image, so the image
    encoder runs once per distinct image (per ``image_sha256``), not once per scenario.

    ``backbone_ref`` names the image backbone and its preprocessing
    (``scoring.features.IMAGE_BACKBONE_REF``); a new image (new sha256) never matches an old
    entry. ``vector`` is little-endian float32, like the pair cache's.
    """

    backbone_ref = models.CharField(max_length=200)
    image_sha256 = models.CharField(max_length=64)
    dim = models.PositiveIntegerField()
    vector = models.BinaryField()
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["backbone_ref", "image_sha256"], name="image_feature_cache_once_per_image"),
        ]

    def __str__(self) -> str:
        return f"{self.backbone_ref} {self.image_sha256[:12]}"
