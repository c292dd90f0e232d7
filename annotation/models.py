"""Contexts, scenarios, annotators, assignments and judgments.

The database itself refuses bad rows (CHECK and UNIQUE constraints below), and judgment
rows are append-only: a database trigger (migration 0002) refuses every UPDATE.
Business logic lives in ``annotation.services``; these classes only describe data.
One module on purpose (about 560 lines): Django looks for an app's models here, and the
constraints of rows that refer to each other read best side by side.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Context(models.Model):
    """A target setting: one image plus a short setting text."""

    class ImageOrigin(models.TextChoices):
        GENERATED = "generated", "generated"
        REAL = "real", "real photograph"

    image = models.ImageField(upload_to="contexts/%Y/%m/")
    image_sha256 = models.CharField(max_length=64, editable=False)
    setting = models.CharField(max_length=300, help_text='e.g. "child crossing a street"')
    source = models.CharField(max_length=200, blank=True, help_text="where the image and setting come from")
    image_origin = models.CharField(max_length=16, choices=ImageOrigin.choices, default=ImageOrigin.REAL)
    image_unreliable = models.BooleanField(
        default=False, help_text="Image unreliable: annotators are told to rely on the text."
    )
    is_active = models.BooleanField(default=True)
    # The id a researcher's import file gives this context: re-importing the file matches on
    # it instead of creating a copy (annotation.dataset.importing). Empty for contexts made by hand.
    external_id = models.CharField(max_length=200, blank=True, default="")
    # The import that created it; "per context batch" agreement groups by this.
    import_batch = models.ForeignKey(
        "ImportBatch", null=True, blank=True, on_delete=models.SET_NULL, related_name="contexts"
    )
    # Initial judgments of its non-canary scenarios. Kept in step by the submit service
    # (same transaction) so that "least-judged first" is an index scan, not an aggregate
    # over every judgment on each assignment request.
    judgment_count = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["is_active", "judgment_count"])]
        constraints = [
            models.CheckConstraint(condition=~Q(setting=""), name="context_setting_not_empty"),
            models.CheckConstraint(
                condition=Q(image_origin__in=["generated", "real"]), name="context_image_origin_valid"
            ),
            models.UniqueConstraint(
                fields=["external_id"], condition=~Q(external_id=""), name="context_external_id_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.setting}"


class Scenario(models.Model):
    """One action in a context, rated by several annotators."""

    class Origin(models.TextChoices):
        SEED = "seed", "seed"
        ANNOTATOR = "annotator", "written by an annotator"

    class Review(models.TextChoices):
        ACCEPTED = "accepted", "accepted"
        PENDING = "pending", "held: waiting for a researcher's approval"
        REJECTED = "rejected", "rejected by a researcher"
        REPORTED = "reported", "reported: out of the pool until a researcher decides"

    context = models.ForeignKey(Context, on_delete=models.PROTECT, related_name="scenarios")
    text = models.TextField()
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.SEED)
    author = models.ForeignKey(
        "Annotator", null=True, blank=True, on_delete=models.PROTECT, related_name="written_scenarios"
    )
    prompted_by = models.ForeignKey(
        "Judgment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="prompted_scenarios",
        help_text="The judgment whose agreement with the model prompted this scenario.",
    )
    # Text-only acceptability label as in Commonsense NormBank: -1 bad, 0 neutral, +1 good.
    text_only_label = models.SmallIntegerField(null=True, blank=True)
    # Canary (gold) scenarios have a known acceptable score range and check attention.
    is_canary = models.BooleanField(default=False)
    canary_min_score = models.SmallIntegerField(null=True, blank=True)
    canary_max_score = models.SmallIntegerField(null=True, blank=True)
    is_retired = models.BooleanField(default=False)
    # Initial judgments so far; kept in step by the submit service, like Context's.
    judgment_count = models.PositiveIntegerField(default=0, editable=False)
    # Whether a researcher lets it be assigned (annotation.services.reports and .content):
    # only "accepted" scenarios are given out.
    review_status = models.CharField(max_length=16, choices=Review.choices, default=Review.ACCEPTED)
    review_note = models.TextField(blank=True, help_text="Why a researcher rejected it.")
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["context", "text"], name="scenario_unique_text_per_context"),
            models.CheckConstraint(
                condition=Q(review_status__in=["accepted", "pending", "rejected", "reported"]),
                name="scenario_review_status_valid",
            ),
            # Only a scenario an annotator wrote waits for approval; a rejection says why.
            models.CheckConstraint(
                condition=~Q(review_status="pending") | Q(origin="annotator"), name="scenario_pending_is_written"
            ),
            models.CheckConstraint(
                condition=~Q(review_status="rejected") | ~Q(review_note=""), name="scenario_rejection_has_reason"
            ),
            models.CheckConstraint(condition=~Q(text=""), name="scenario_text_not_empty"),
            models.CheckConstraint(
                condition=Q(text_only_label__isnull=True) | Q(text_only_label__in=[-1, 0, 1]),
                name="scenario_text_only_label_valid",
            ),
            models.CheckConstraint(condition=Q(origin__in=["seed", "annotator"]), name="scenario_origin_valid"),
            models.CheckConstraint(
                condition=Q(origin="seed") | Q(author__isnull=False),
                name="scenario_annotator_origin_has_author",
            ),
            models.CheckConstraint(
                condition=Q(is_canary=False, canary_min_score__isnull=True, canary_max_score__isnull=True)
                | Q(
                    is_canary=True,
                    # NULL makes a CHECK pass, so both ends must be required explicitly
                    canary_min_score__isnull=False,
                    canary_max_score__isnull=False,
                    canary_min_score__gte=1,
                    canary_max_score__lte=5,
                    canary_min_score__lte=models.F("canary_max_score"),
                ),
                name="scenario_canary_range_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.text[:80]

    def canary_accepts(self, score: int) -> bool:
        return self.is_canary and self.canary_min_score <= score <= self.canary_max_score


class Annotator(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "active"
        PAUSED = "paused", "paused"
        SCREENED_OUT = "screened_out", "screened out"

    class Platform(models.TextChoices):
        LOCAL = "local", "local account"
        PROLIFIC = "prolific", "Prolific"
        MTURK = "mturk", "Amazon Mechanical Turk"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotator")
    # Pseudonymous id for exports: never the username.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    consent_version = models.CharField(max_length=32, blank=True)
    consented_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # Why the status is what it is (set with it by annotation.services.screening; the history is in
    # AnnotatorScreening).
    status_reason = models.TextField(blank=True)
    # Crowd platforms: the participant id the entry URL carried (?PROLIFIC_PID= / ?workerId=).
    platform = models.CharField(max_length=16, choices=Platform.choices, default=Platform.LOCAL)
    platform_participant_id = models.CharField(max_length=128, blank=True, default="")
    # The platform's session id of the first entry that carried one (Prolific's SESSION_ID,
    # MTurk's assignmentId); a later entry must carry the same (annotation.crowd).
    platform_session_id = models.CharField(max_length=64, blank=True, default="")
    # Crowd participants: a keyed hash of the client address they were created from, so
    # creations per address can be counted (rate limit) without storing the address.
    entry_address = models.CharField(max_length=32, blank=True, default="")
    # Latest automatic quality screening (annotation.research.quality): {"flags": [...], "stats": {...}}.
    # Flags only suggest; a researcher confirms a screening, which changes ``status``.
    quality = models.JSONField(default=dict, blank=True)
    quality_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["active", "paused", "screened_out"]), name="annotator_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(platform__in=["local", "prolific", "mturk"]), name="annotator_platform_valid"
            ),
            models.UniqueConstraint(
                fields=["platform", "platform_participant_id"],
                condition=~Q(platform_participant_id=""),
                name="annotator_platform_participant_unique",
            ),
            models.CheckConstraint(
                condition=Q(consent_version="", consented_at__isnull=True)
                | (~Q(consent_version="") & Q(consented_at__isnull=False)),
                name="annotator_consent_version_with_time",
            ),
        ]
        # The crowd entry's rate limits count recent creations per address and per platform.
        indexes = [
            models.Index(fields=["entry_address", "created_at"]),
            models.Index(fields=["platform", "created_at"]),
        ]

    def __str__(self) -> str:
        return self.user.get_username()

    def has_consented(self, version: str) -> bool:
        return self.consent_version == version


class AnnotatorScreening(models.Model):
    """Append-only history of an annotator's status changes: who, when, why.

    ``decided_by`` is empty for automatic decisions (e.g. a pause on a low canary pass rate).
    """

    class Action(models.TextChoices):
        SCREEN_OUT = "screen_out", "screened out"
        PAUSE = "pause", "paused"
        REINSTATE = "reinstate", "reinstated (screening lifted)"

    annotator = models.ForeignKey(Annotator, on_delete=models.PROTECT, related_name="screenings")
    action = models.CharField(max_length=16, choices=Action.choices)
    reasons = models.JSONField(default=list, blank=True, help_text="The quality flags or the researcher's note.")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=["screen_out", "pause", "reinstate"]), name="annotator_screening_action_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.annotator}: {self.get_action_display()} ({self.created_at:%Y-%m-%d})"


class ImportBatch(models.Model):
    """One bulk import of contexts, scenarios and ratings (see ``annotation.dataset.importing``).

    ``queued``: uploaded in the admin, waiting for a worker (the files wait under
    ``imports/`` in private media); ``rejected`` (errors): nothing was imported; ``done``:
    the rows are in (counts say how many were new and how many already there); ``failed``:
    an unexpected error, rolled back.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "queued (a worker imports it)"
        RUNNING = "running", "running"
        DONE = "done", "done"
        REJECTED = "rejected", "rejected (errors, nothing imported)"
        FAILED = "failed", "failed"

    file_name = models.CharField(max_length=300)
    file_sha256 = models.CharField(max_length=64)
    format = models.CharField(max_length=8)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    counts = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True, help_text="[{row, field, message}, ...]")
    options = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Bumped while a worker imports it: a running batch silent for MORALE_JOB_STALE_MINUTES lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The job lifecycle (morale/jobs.py): the claim's fencing token, how many claims, when last sent.
    claim_token = models.CharField(max_length=32, blank=True, editable=False)
    attempts = models.PositiveIntegerField(default=0, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "import batches"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "rejected", "failed"]),
                name="import_batch_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"import #{self.pk} {self.file_name} ({self.status})"


class Assignment(models.Model):
    """One page of work: a context and the scenarios the annotator is to rate on it.

    While active and not past ``expires_at``, its items hold a judgment slot of their
    scenarios; once expired, the slots go back to the pool.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "active"
        SUBMITTED = "submitted", "rated; follow-up step pending"
        COMPLETED = "completed", "completed"
        EXPIRED = "expired", "expired"

    annotator = models.ForeignKey(Annotator, on_delete=models.PROTECT, related_name="assignments")
    context = models.ForeignKey(Context, on_delete=models.PROTECT, related_name="assignments")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # When the rating page was first shown (server clock): the judgments' seconds_spent
    # counts from here, never from anything the browser sends.
    rendered_at = models.DateTimeField(null=True, blank=True)
    # A crowd participant's first page: it holds its slots for MORALE_FIRST_PAGE_TTL_MINUTES
    # only and counts against MORALE_MAX_UNTOUCHED_PARTICIPANTS while unsubmitted.
    is_first_page = models.BooleanField(default=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["active", "submitted", "completed", "expired"]),
                name="assignment_status_valid",
            ),
            # One open page per annotator: two tabs get the same assignment.
            models.UniqueConstraint(
                fields=["annotator"],
                condition=Q(status__in=["active", "submitted"]),
                name="assignment_one_open_per_annotator",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"assignment #{self.pk} ({self.annotator} on context #{self.context_id})"


class AssignmentItem(models.Model):
    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="items")
    scenario = models.ForeignKey(Scenario, on_delete=models.PROTECT, related_name="assignment_items")
    position = models.PositiveSmallIntegerField()
    # When the grounding check of this scenario was first shown (server clock): the
    # reconfirmed judgment's seconds_spent counts from here.
    check_shown_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["assignment", "position"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "scenario"], name="assignment_item_unique_scenario"),
            models.UniqueConstraint(fields=["assignment", "position"], name="assignment_item_unique_position"),
        ]


class Judgment(models.Model):
    """One annotator's score and grounding modality for one scenario. Append-only."""

    class Modality(models.TextChoices):
        TEXT = "text", "text"
        IMAGE = "image", "image"
        BOTH = "both", "both"

    class Phase(models.TextChoices):
        INITIAL = "initial", "initial"
        RECONFIRMED = "reconfirmed", "reconfirmed after a grounding check"

    annotator = models.ForeignKey(Annotator, on_delete=models.PROTECT, related_name="judgments")
    scenario = models.ForeignKey(Scenario, on_delete=models.PROTECT, related_name="judgments")
    assignment = models.ForeignKey(Assignment, on_delete=models.PROTECT, related_name="judgments")
    score = models.SmallIntegerField()
    modality = models.CharField(max_length=8, choices=Modality.choices)
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.INITIAL)
    revises = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reconfirmation",
        help_text="For a reconfirmed judgment: the initial judgment it keeps or revises.",
    )
    # What the model said at the moment of this judgment (null: no score yet).
    model_version = models.ForeignKey(
        "modelloop.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    model_score = models.FloatField(null=True, blank=True)
    delta = models.FloatField(null=True, blank=True)
    canary_passed = models.BooleanField(null=True, blank=True)
    seconds_spent = models.FloatField(null=True, blank=True)
    client_token = models.UUIDField(help_text="Set by the page; a repeated submit is stored once.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=1, score__lte=5), name="judgment_score_1_to_5"),
            models.CheckConstraint(
                condition=Q(modality__in=["text", "image", "both"]), name="judgment_modality_valid"
            ),
            models.CheckConstraint(
                condition=Q(phase="initial", revises__isnull=True)
                | Q(phase="reconfirmed", revises__isnull=False),
                name="judgment_reconfirmation_revises_initial",
            ),
            models.CheckConstraint(
                condition=Q(model_score__isnull=True) | Q(model_score__gte=1, model_score__lte=5),
                name="judgment_model_score_1_to_5",
            ),
            models.CheckConstraint(
                condition=Q(delta__isnull=True) | Q(delta__gte=0), name="judgment_delta_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(seconds_spent__isnull=True) | Q(seconds_spent__gte=0),
                name="judgment_seconds_non_negative",
            ),
            # Nobody rates a scenario twice (one initial and at most one reconfirmation).
            models.UniqueConstraint(
                fields=["annotator", "scenario", "phase"], name="judgment_once_per_annotator_scenario_phase"
            ),
            models.UniqueConstraint(fields=["annotator", "client_token"], name="judgment_client_token_unique"),
        ]
        indexes = [models.Index(fields=["scenario", "phase"])]

    def __str__(self) -> str:
        return f"{self.annotator} rated #{self.scenario_id} {self.score} ({self.modality}, {self.phase})"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise ValueError("Judgments are append-only; write a reconfirmation instead of updating.")
        super().save(*args, **kwargs)


class ItemReport(models.Model):
    """An annotator's report that a scenario is offensive, has a broken image, makes no sense, ...

    One per annotator and scenario; the reported scenario is skipped on that annotator's
    page. Reports from MORALE_REPORTS_TO_HOLD annotators take the scenario out of the pool
    until a researcher keeps it or retires it, which closes its open reports
    (``decision``; empty while open). Written by ``annotation.services.reports`` only.
    """

    class Reason(models.TextChoices):
        OFFENSIVE = "offensive", "offensive"
        BROKEN_IMAGE = "broken_image", "broken image"
        NONSENSE = "nonsense", "makes no sense"
        OTHER = "other", "other"

    class Decision(models.TextChoices):
        OPEN = "", "waiting for a researcher"
        KEPT = "kept", "kept in the pool"
        RETIRED = "retired", "scenario retired"

    annotator = models.ForeignKey(Annotator, on_delete=models.PROTECT, related_name="item_reports")
    scenario = models.ForeignKey(Scenario, on_delete=models.PROTECT, related_name="reports")
    assignment = models.ForeignKey(Assignment, on_delete=models.PROTECT, related_name="item_reports")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    note = models.TextField(blank=True, help_text='The annotator\'s words; required for "other".')
    decision = models.CharField(max_length=8, choices=Decision.choices, default=Decision.OPEN, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["annotator", "scenario"], name="item_report_once_per_annotator"),
            models.CheckConstraint(
                condition=Q(reason__in=["offensive", "broken_image", "nonsense", "other"]),
                name="item_report_reason_valid",
            ),
            models.CheckConstraint(condition=~Q(reason="other") | ~Q(note=""), name="item_report_other_has_note"),
            models.CheckConstraint(
                condition=Q(decision__in=["", "kept", "retired"]), name="item_report_decision_valid"
            ),
        ]
        indexes = [models.Index(fields=["scenario", "decision"])]

    def __str__(self) -> str:
        return f"report #{self.pk} on scenario #{self.scenario_id}: {self.get_reason_display()}"


class PageComment(models.Model):
    """An annotator's optional comment on one page of work (one per page; the latest text wins)."""

    annotator = models.ForeignKey(Annotator, on_delete=models.PROTECT, related_name="page_comments")
    assignment = models.OneToOneField(Assignment, on_delete=models.PROTECT, related_name="comment")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.CheckConstraint(condition=~Q(text=""), name="page_comment_not_empty")]

    def __str__(self) -> str:
        return f"comment on assignment #{self.assignment_id}"


class WrittenScenario(Scenario):
    """Scenarios written by annotators: the researchers' approval queue (admin)."""

    class Meta:
        proxy = True
        ordering = ["-id"]
        verbose_name = "written scenario"
        verbose_name_plural = "written scenarios to review"


class ReportedScenario(Scenario):
    """Scenarios with item reports: the researchers' keep-or-retire queue (admin)."""

    class Meta:
        proxy = True
        ordering = ["-id"]


class Disagreement(Judgment):
    """Initial judgments at least MORALE_DISAGREEMENT_THRESHOLD away from the model's score:
    the ones that triggered a grounding check. A proxy for the researchers' admin list."""

    class Meta:
        proxy = True
        ordering = ["-id"]


# --- imported ratings (annotation.dataset.importing; why tables of their own: docs/dataset-import.md) ---
class _AppendOnly(models.Model):
    """Rows written once: saving one again is refused here, and a database trigger
    (migration 0008) refuses every UPDATE."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise ValueError(f"{type(self).__name__} rows are append-only.")
        super().save(*args, **kwargs)


class ImportedRater(_AppendOnly):
    """A rater whose ratings came from an import file (a pilot, an earlier study, a public
    data set): pseudonymous, no account, never logs in, never gets a page.

    ``external_id`` is the id the file gave; all imports share one namespace of these ids.
    Exports carry ``public_id``, never ``external_id`` (it may be a crowd worker's id).
    """

    external_id = models.CharField(max_length=200)
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    first_batch = models.ForeignKey(ImportBatch, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["external_id"], name="imported_rater_external_id_unique"),
            models.CheckConstraint(condition=~Q(external_id=""), name="imported_rater_external_id_not_empty"),
        ]

    def __str__(self) -> str:
        return f"imported rater {self.external_id}"


class ImportedRating(_AppendOnly):
    """One imported rater's 1-5 score of one scenario, marked with its import batch.
    Append-only (a database trigger refuses UPDATEs, as for judgments).

    Not a judgment of an annotator: no page, no model score, no quality figure. It fills
    an assignment slot only when its batch was imported with ``count_towards_target``.
    """

    batch = models.ForeignKey(ImportBatch, on_delete=models.PROTECT, related_name="ratings")
    rater = models.ForeignKey(ImportedRater, on_delete=models.PROTECT, related_name="ratings")
    scenario = models.ForeignKey(Scenario, on_delete=models.PROTECT, related_name="imported_ratings")
    score = models.SmallIntegerField()
    # "" where the file does not say which modality drove the judgment.
    modality = models.CharField(max_length=8, blank=True, choices=Judgment.Modality.choices)
    rated_at = models.DateTimeField(null=True, blank=True, help_text="When the rater gave it, if the file says.")
    counts_towards_target = models.BooleanField(
        default=False, help_text="Fills one of the scenario's MORALE_JUDGMENTS_PER_SCENARIO slots."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=1, score__lte=5), name="imported_rating_score_1_to_5"),
            models.CheckConstraint(
                condition=Q(modality__in=["", "text", "image", "both"]), name="imported_rating_modality_valid"
            ),
            # The same rater twice on one scenario is refused.
            models.UniqueConstraint(fields=["rater", "scenario"], name="imported_rating_once_per_rater_scenario"),
        ]

    def __str__(self) -> str:
        return f"{self.rater} rated #{self.scenario_id} {self.score} (import #{self.batch_id})"


class ImportedAggregate(_AppendOnly):
    """A pre-aggregated score of one scenario: the mean of ``raters`` raters whose single
    ratings the file does not give. Append-only, like imported ratings.

    ``rater_group`` names the raters (e.g. "pilot 2025"; "" when the file names none): one
    aggregate per scenario and group.
    """

    batch = models.ForeignKey(ImportBatch, on_delete=models.PROTECT, related_name="aggregates")
    scenario = models.ForeignKey(Scenario, on_delete=models.PROTECT, related_name="imported_aggregates")
    rater_group = models.CharField(max_length=200, blank=True, default="")
    mean = models.FloatField()
    raters = models.PositiveIntegerField()
    counts_towards_target = models.BooleanField(
        default=False, help_text="Its raters fill the scenario's MORALE_JUDGMENTS_PER_SCENARIO slots."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # NaN fails both comparisons on PostgreSQL and is stored as NULL (refused) by SQLite.
            models.CheckConstraint(condition=Q(mean__gte=1, mean__lte=5), name="imported_aggregate_mean_1_to_5"),
            models.CheckConstraint(condition=Q(raters__gte=1), name="imported_aggregate_raters_at_least_1"),
            models.UniqueConstraint(fields=["scenario", "rater_group"], name="imported_aggregate_once_per_group"),
        ]

    def __str__(self) -> str:
        return f"mean {self.mean:.2f} of {self.raters} raters on #{self.scenario_id} (import #{self.batch_id})"


class DatasetExport(models.Model):
    """One dataset export file and how it was made (see ``annotation.dataset.export``).

    Written by ``annotation.dataset.export.service.dataset_export_create`` only: ``running`` while the
    file is written, then ``done`` (file, sha256 and counts set) or ``failed`` (the reason
    in ``error``, no file).
    """

    class Format(models.TextChoices):
        JSONL = "jsonl", "JSON Lines (one line per context)"
        CSV = "csv", "CSV (one row per judgment)"
        PARQUET = "parquet", "Parquet (one row per context)"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    file = models.FileField(upload_to="exports/", blank=True, max_length=300)
    format = models.CharField(max_length=8, choices=Format.choices)
    format_version = models.CharField(max_length=32, help_text='e.g. "morale-export/1"')
    sha256 = models.CharField(max_length=64, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="What was exported and what each filter dropped.")
    options = models.JSONField(default=dict, blank=True, help_text="Settings and filters this export used.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    error = models.TextField(blank=True)
    # Background exports (admin, API) report progress in contexts written so far.
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(null=True, blank=True)
    # Bumped with every chunk written: a running export whose heartbeat is older than
    # MORALE_JOB_STALE_MINUTES lost its worker and is queued again (morale/jobs.py).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="dataset_exports"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The job lifecycle (morale/jobs.py): the claim's fencing token, how many claims, when last sent.
    claim_token = models.CharField(max_length=32, blank=True, editable=False)
    attempts = models.PositiveIntegerField(default=0, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(format__in=["jsonl", "csv", "parquet"]), name="dataset_export_format_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "failed"]), name="dataset_export_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="done")
                | (~Q(file="") & ~Q(sha256="") & Q(finished_at__isnull=False)),
                name="dataset_export_done_has_file_and_hash",
            ),
        ]

    def __str__(self) -> str:
        return f"export #{self.pk} ({self.format}, {self.status})"


# --- onboarding: the instructions and the practice round after consent ---------------------
# Versioned like the consent: an annotator who has read (or practised) version v is not sent
# there again; a newer version sends everybody once (``OnboardingRecord``). The newest row is
# the current one; editing a row in place (a typo) sends nobody again.


class InstructionsVersion(models.Model):
    """The instructions page (paper, figure 14 and appendix 11): the task, the 1-5 scale,
    the modality definitions, the grounding check. The page also shows the scale labels and
    the modality definitions the rating page uses, so the two never disagree."""

    version = models.CharField(
        max_length=32, unique=True, help_text='e.g. "2026-11-v2". A new version is shown to every annotator once.'
    )
    task = models.TextField(help_text="What annotators do. Blank lines separate paragraphs.")
    scale = models.TextField(help_text="How to use the 1-5 scale (the five labels are shown below it).")
    modality = models.TextField(help_text="Text, image or both (the definitions are shown below it).")
    grounding_check = models.TextField(help_text="What a grounding check is, and the optional new scenario.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "instructions version"
        constraints = [models.CheckConstraint(condition=~Q(version=""), name="instructions_version_not_empty")]

    def __str__(self) -> str:
        return f"instructions {self.version}"


class PracticeRound(models.Model):
    """A few practice items with known answers, shown after the instructions. The answers
    get feedback and are kept on the annotator's ``OnboardingRecord``; they never become
    judgments, so no export, figure or training run sees them."""

    version = models.CharField(
        max_length=32, unique=True, help_text='e.g. "practice-v2". A new version is shown to every annotator once.'
    )
    intro = models.TextField(help_text="Shown above the practice items. Blank lines separate paragraphs.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.CheckConstraint(condition=~Q(version=""), name="practice_round_version_not_empty")]

    def __str__(self) -> str:
        return f"practice {self.version}"


class PracticeItem(models.Model):
    """One practice scenario with its image, the scores that count as right, and the feedback."""

    practice_round = models.ForeignKey(PracticeRound, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveSmallIntegerField(default=0)
    # Under contexts/ so that it is served like the context images (the only public media).
    image = models.ImageField(upload_to="contexts/practice/")
    setting = models.CharField(max_length=300)
    text = models.TextField(help_text="The scenario (an action in the setting).")
    min_score = models.SmallIntegerField(help_text="Lowest score counted as right (1-5).")
    max_score = models.SmallIntegerField(help_text="Highest score counted as right (1-5).")
    modality = models.CharField(
        max_length=8,
        blank=True,
        choices=[("", "any"), *Judgment.Modality.choices],
        help_text="The modality counted as right; empty: any answer is fine.",
    )
    explanation = models.TextField(help_text="Feedback shown after the answer: why these scores.")

    class Meta:
        ordering = ["practice_round", "position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(min_score__gte=1, max_score__lte=5, min_score__lte=models.F("max_score")),
                name="practice_item_score_range_valid",
            ),
            models.CheckConstraint(
                condition=Q(modality__in=["", "text", "image", "both"]), name="practice_item_modality_valid"
            ),
            models.CheckConstraint(condition=~Q(text=""), name="practice_item_text_not_empty"),
        ]

    def __str__(self) -> str:
        return self.text[:80]

    def accepts_score(self, score: int) -> bool:
        return self.min_score <= score <= self.max_score

    def accepts_modality(self, modality: str) -> bool:
        return not self.modality or self.modality == modality


class OnboardingRecord(models.Model):
    """An annotator has read instructions version ``version``, or answered practice round
    ``version`` (``answers``: what they chose per item and whether it was right)."""

    class Step(models.TextChoices):
        INSTRUCTIONS = "instructions", "read the instructions"
        PRACTICE = "practice", "did the practice round"

    annotator = models.ForeignKey(Annotator, on_delete=models.PROTECT, related_name="onboarding")
    step = models.CharField(max_length=16, choices=Step.choices)
    version = models.CharField(max_length=32)
    answers = models.JSONField(default=list, blank=True, help_text="Practice: one entry per item.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(step__in=["instructions", "practice"]), name="onboarding_record_step_valid"
            ),
            models.UniqueConstraint(fields=["annotator", "step", "version"], name="onboarding_record_once_per_version"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator}: {self.get_step_display()} {self.version}"
