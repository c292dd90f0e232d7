"""Training runs: which export they read, how they went, and the version they produced."""

from django.db import models
from django.db.models import Q


class TrainingRun(models.Model):
    """One training of the ranking head on one dataset export.

    Mutable while it runs (status, progress, per-epoch metrics, log, heartbeat). At most
    one run is queued or running at a time: the database refuses a second one.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "celery beat schedule"
        COMMAND = "command", "management command"
        ADMIN = "admin", "admin"
        JUDGMENTS = "judgments", "new judgments arrived"

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    triggered_by = models.CharField(max_length=12, choices=Trigger.choices, default=Trigger.COMMAND)
    config = models.JSONField(default=dict, help_text="training.train.TrainConfig, as used")
    export = models.ForeignKey(
        "annotation.DatasetExport", null=True, blank=True, on_delete=models.PROTECT, related_name="training_runs"
    )
    progress = models.FloatField(default=0.0, help_text="0-1, updated while the run trains")
    metrics = models.JSONField(default=dict, blank=True, help_text="per-epoch history, test metrics, gate figures")
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    model_version = models.ForeignKey(
        "modelloop.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs"
    )
    promoted = models.BooleanField(default=False)
    gate_reason = models.TextField(blank=True, help_text="why the new version was or was not made current")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="last sign of life of the worker")
    # The job lifecycle (morale/jobs.py): the claim's fencing token, how many claims, when last sent.
    claim_token = models.CharField(max_length=32, blank=True, editable=False)
    attempts = models.PositiveIntegerField(default=0, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed"]), name="training_run_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(progress__gte=0, progress__lte=1), name="training_run_progress_0_to_1"
            ),
            # The lock: runs never overlap. A unique index on a constant over the active
            # rows admits one queued-or-running row in all.
            models.UniqueConstraint(
                models.Value(1),
                condition=Q(status__in=["queued", "running"]),
                name="training_run_one_active",
            ),
        ]

    def __str__(self) -> str:
        return f"training run #{self.pk} ({self.status})"


class ProbeRun(models.Model):
    """One robustness and modality probe of a model version (``training.probes``), optionally
    against a reference version (the current one) for Rel. mCE. Its figures are ``ProbeResult``s."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    class Suite(models.TextChoices):
        PILOT = "pilot", "pilot: 4 corruptions at severities 1, 3, 5"
        FULL = "full", "full: every corruption at severities 1-5"

    model_version = models.ForeignKey("modelloop.ModelVersion", on_delete=models.CASCADE, related_name="probe_runs")
    against = models.ForeignKey(
        "modelloop.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="probe_runs_as_reference",
        help_text="the reference version of CE and Rel. mCE (the current one, for a candidate)",
    )
    export = models.ForeignKey(
        "annotation.DatasetExport", null=True, blank=True, on_delete=models.SET_NULL, related_name="probe_runs"
    )
    suite = models.CharField(max_length=8, choices=Suite.choices, default=Suite.PILOT)
    split = models.CharField(max_length=8, default="test", help_text="export split probed: test, train or all")
    max_contexts = models.PositiveIntegerField(null=True, blank=True, help_text="at most this many contexts (all: empty)")
    seed = models.IntegerField(default=0)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    n_contexts = models.PositiveIntegerField(default=0)
    n_pairs = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(null=True, blank=True, help_text="scoring and figures, wall clock")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="last sign of life of the worker")
    # The job lifecycle (morale/jobs.py): the claim's fencing token, how many claims, when last sent.
    claim_token = models.CharField(max_length=32, blank=True, editable=False)
    attempts = models.PositiveIntegerField(default=0, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed"]), name="probe_run_status_valid"
            ),
            models.CheckConstraint(condition=Q(suite__in=["pilot", "full"]), name="probe_run_suite_valid"),
            models.CheckConstraint(condition=Q(split__in=["test", "train", "all"]), name="probe_run_split_valid"),
        ]

    def __str__(self) -> str:
        return f"probe run #{self.pk} of version #{self.model_version_id} ({self.status})"


class ProbeResult(models.Model):
    """The probe figures of one version in one probe run (the probed version, and the reference).

    ``figures`` holds everything (docs/probes.md); the headline numbers are columns too, so
    the admin, the dashboard and the gate read them without parsing.
    """

    run = models.ForeignKey(ProbeRun, on_delete=models.CASCADE, related_name="results")
    model_version = models.ForeignKey("modelloop.ModelVersion", on_delete=models.CASCADE, related_name="probe_results")
    is_reference = models.BooleanField(default=False)
    flip_rate = models.FloatField(null=True, blank=True, help_text="pooled over meaning-preserving perturbations")
    mean_abs_shift = models.FloatField(null=True, blank=True)
    clean_error = models.FloatField(null=True, blank=True, help_text="MAE against the human mean, clean inputs")
    mce = models.FloatField(null=True, blank=True, help_text="mean CE, normalised by the reference's corrupted error")
    rel_mce = models.FloatField(null=True, blank=True, help_text="mCE(this) / mCE(reference)")
    persuasion_sensitivity = models.FloatField(null=True, blank=True)
    image_reliance = models.FloatField(null=True, blank=True)
    figures = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "is_reference"]
        constraints = [models.UniqueConstraint(fields=["run", "model_version"], name="probe_result_one_per_version")]

    def __str__(self) -> str:
        return f"probe result of version #{self.model_version_id} in run #{self.run_id}"


class RetrainPolicy(models.Model):
    """The retrain trigger's setting, editable in the admin: one row at most (pk 1).

    ``after_judgments`` empty: the default, settings.MORALE_RETRAIN_AFTER_JUDGMENTS; 0: off.
    Read by ``training.trigger.retrain_threshold``.
    """

    SINGLETON_PK = 1

    after_judgments = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Queue a head-only training run once this many new usable judgments (first answers of "
        "active annotators on non-canary scenarios) arrived since the last run's export. 0 turns it off; "
        "empty uses the deployment default MORALE_RETRAIN_AFTER_JUDGMENTS. Never while a run is going; "
        "promotion still goes through the gate.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "retrain policy"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="retrain_policy_singleton")]

    def __str__(self) -> str:
        return "retrain policy"
