"""Model versions (scorers) and their predictions for scenarios."""

from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    """A scorer: which implementation, its weights and config, and whether it is current.

    Exactly one version is current. The database refuses a second current row (partial
    unique index); ``modelloop.services.model_version_promote`` switches atomically, and
    migration 0002 creates the first current version, the zero-shot baseline.
    """

    name = models.CharField(max_length=100, unique=True)
    scorer = models.CharField(
        max_length=64, help_text="Scorer implementation key, see modelloop.scoring.SCORERS."
    )
    description = models.TextField(blank=True, help_text="What this version is, shown in the admin.")
    config = models.JSONField(default=dict, blank=True)
    head_weights = models.FileField(upload_to="model_versions/", blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    is_current = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

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
