"""Writes of the study's content: contexts (image + setting) and their scenarios.

``context_build`` is the one rule for a valid new context (every path that makes one goes
through it); ``scenario_create`` the one way a scenario enters the pool (scored at once).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from modelloop import services as modelloop_services
from morale.text import text_clean

from ..images import CheckedImage, check_image_upload, stored_upload
from ..models import Annotator, Assignment, Context, ImportBatch, Judgment, Scenario
from .assignment import assignment_complete
from .reports import report_text_clean


# --- contexts ------------------------------------------------------------------------------
def context_build(
    *,
    image,
    checked: CheckedImage,
    setting: str,
    source: str = "",
    image_origin: str = Context.ImageOrigin.REAL,
    image_unreliable: bool = False,
    is_active: bool = True,
    external_id: str = "",
    import_batch: ImportBatch | None = None,
    check_in_database: bool = True,
) -> Context:
    """An unsaved Context that passes every rule of a new context; ValidationError if not.

    ``checked`` is what ``images.check_image_upload`` returned for ``image`` (an upload, or
    the name it is stored under): a context is never built from an unchecked image, and its
    sha256 is the one that check computed. An upload is stored under the name that check
    gives it (``<sha256>.<detected format>``), never the name it came with. Texts are stripped, then ``full_clean()``. A bulk
    caller may pass ``check_in_database=False`` to skip the checks that cost a query each
    (the unique external id, the CheckConstraints, the import batch's existence: the
    database enforces them at insert anyway) and ``bulk_create`` what it gets.
    """
    context = Context(
        image=stored_upload(image, checked) if hasattr(image, "read") else image,
        image_sha256=checked.sha256,
        setting=context_text_clean(setting, field="The setting"),
        source=context_text_clean(source, field="The source"),
        image_origin=image_origin,
        image_unreliable=image_unreliable,
        is_active=is_active,
        external_id=external_id,
        import_batch=import_batch,
    )
    context.full_clean(
        exclude=None if check_in_database else ["import_batch"],
        validate_unique=check_in_database,
        validate_constraints=check_in_database,
    )
    return context


def context_text_clean(value, *, field: str) -> str:
    """A context's setting or source as stored: one line, no control characters
    (``morale.text``), stripped; ValidationError naming ``field`` if refused."""
    return text_clean(value or "", field=field).strip()


@transaction.atomic
def context_create(
    *,
    image_file,
    setting: str,
    source: str = "",
    image_origin: str = Context.ImageOrigin.REAL,
    image_unreliable: bool = False,
    is_active: bool = True,
) -> Context:
    """Store a new context after checking that its file really is an acceptable image."""
    context = context_build(
        image=image_file,
        checked=check_image_upload(image_file),
        setting=setting,
        source=source,
        image_origin=image_origin,
        image_unreliable=image_unreliable,
        is_active=is_active,
    )
    context.save()
    return context


@transaction.atomic
def context_update(*, context: Context, new_image=None) -> Context:
    """Save a researcher's edit of a stored context (the admin's change form).

    A replaced image (``new_image``, an upload) passes the same check as a new context's,
    is stored under the name it gives and its sha256 is recorded; texts are stripped, then ``full_clean()``.
    """
    if new_image is not None:
        checked = check_image_upload(new_image)
        context.image = stored_upload(new_image, checked)
        context.image_sha256 = checked.sha256
    context.setting = context_text_clean(context.setting, field="The setting")
    context.source = context_text_clean(context.source, field="The source")
    context.full_clean()
    context.save()
    return context


# --- scenarios -----------------------------------------------------------------------------
def scenario_text_clean(text) -> str:
    """Normalise and check a scenario text; raise ValidationError with a readable message."""
    if not isinstance(text, str):
        raise ValidationError("The scenario must be text.", code="scenario_type")
    # NUL and other control characters are refused, tabs and line breaks become spaces;
    # then whitespace collapses.
    cleaned = " ".join(text_clean(text, field="The scenario").split())
    if not cleaned:
        raise ValidationError("Please write the scenario: it is empty.", code="scenario_empty")
    limit = settings.MORALE_SCENARIO_MAX_CHARS
    if len(cleaned) > limit:
        raise ValidationError(
            f"Please keep the scenario under {limit} characters (it has {len(cleaned)}).", code="scenario_too_long"
        )
    return cleaned


@transaction.atomic
def scenario_create(
    *,
    context: Context,
    text: str,
    origin: str = Scenario.Origin.SEED,
    author: Annotator | None = None,
    prompted_by: Judgment | None = None,
    text_only_label: int | None = None,
    is_canary: bool = False,
    canary_min_score: int | None = None,
    canary_max_score: int | None = None,
    is_retired: bool = False,
    review_status: str = Scenario.Review.ACCEPTED,
) -> Scenario:
    """Create a scenario and queue its scoring by the current model once committed (also
    when it is held for review: its score is ready when a researcher approves it)."""
    cleaned = scenario_text_clean(text)
    if Scenario.objects.filter(context=context, text__iexact=cleaned).exists():
        raise ValidationError("This image already has that scenario.", code="scenario_duplicate")
    scenario = Scenario(
        context=context,
        text=cleaned,
        origin=origin,
        author=author,
        prompted_by=prompted_by,
        text_only_label=text_only_label,
        is_canary=is_canary,
        canary_min_score=canary_min_score,
        canary_max_score=canary_max_score,
        is_retired=is_retired,
        review_status=review_status,
    )
    scenario.full_clean()
    scenario.save()
    modelloop_services.scoring_enqueue(scenario_ids=[scenario.pk])
    return scenario


def scenario_add_by_annotator(*, annotator: Annotator, assignment_id: int, text: str) -> Scenario:
    """The add-scenario step: a new action for the same image, written by the annotator.

    The scenario is scored at once and enters the pool for other annotators, or, with
    MORALE_WRITTEN_SCENARIOS=review, waits (``review_status`` "pending") until a researcher
    approves it (``scenarios_approve``). Submitting the same text twice (a double click)
    returns the scenario written the first time.
    """
    assignment = Assignment.objects.select_related("context").get(pk=assignment_id, annotator=annotator)
    cleaned = scenario_text_clean(text)
    mine = Scenario.objects.filter(context=assignment.context, text__iexact=cleaned, author=annotator).first()
    if mine is not None:
        return mine
    prompted_by = (
        Judgment.objects.filter(assignment=assignment, phase=Judgment.Phase.INITIAL).order_by("id").first()
    )
    with transaction.atomic():
        scenario = scenario_create(
            context=assignment.context,
            text=cleaned,
            origin=Scenario.Origin.ANNOTATOR,
            author=annotator,
            prompted_by=prompted_by,
            review_status=(
                Scenario.Review.PENDING if settings.MORALE_WRITTEN_SCENARIOS == "review" else Scenario.Review.ACCEPTED
            ),
        )
        assignment_complete(annotator=annotator, assignment_id=assignment.pk)
    return scenario


# --- researchers' bulk actions (admin, API) --------------------------------------------------
def contexts_set_active(*, context_ids, active: bool) -> int:
    """Stop giving out contexts (their scenarios leave the pool; judgments stay) or give them
    out again. Returns how many were selected."""
    return Context.objects.filter(pk__in=list(context_ids)).update(is_active=active)


def scenarios_set_retired(*, scenario_ids, retired: bool = True) -> int:
    """Retire scenarios (no new pages show them; their judgments stay and are exported) or
    bring them back. Returns how many changed."""
    return Scenario.objects.filter(pk__in=list(scenario_ids)).exclude(is_retired=retired).update(is_retired=retired)


@transaction.atomic
def scenarios_approve(*, scenario_ids, by, now=None) -> int:
    """Let written scenarios that wait for review (or were rejected) into the pool.
    Returns how many changed; accepted ones are left as they are."""
    return (
        Scenario.objects.filter(
            pk__in=list(scenario_ids), review_status__in=[Scenario.Review.PENDING, Scenario.Review.REJECTED]
        ).update(review_status=Scenario.Review.ACCEPTED, review_note="", reviewed_by=by, reviewed_at=now or timezone.now())
    )


@transaction.atomic
def scenarios_reject(*, scenario_ids, by, reason, now=None) -> int:
    """Refuse written scenarios that wait for review, with the researcher's reason; they are
    never given out (and have no judgments to export). Returns how many changed."""
    reason = report_text_clean(reason, what="reason")
    if not reason:
        raise ValidationError("Please give a reason for the rejection.", code="reason_missing")
    return Scenario.objects.filter(pk__in=list(scenario_ids), review_status=Scenario.Review.PENDING).update(
        review_status=Scenario.Review.REJECTED, review_note=reason, reviewed_by=by, reviewed_at=now or timezone.now()
    )
