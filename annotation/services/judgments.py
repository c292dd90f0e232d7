"""Writes of judgments: checking a rating, storing a page's ratings once, answering a grounding check.

Judgments are append-only: a grounding check adds a reconfirmed judgment that revises the
initial one. Each write is idempotent per page token (a double submit stores one set).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Subquery
from django.utils import timezone

from modelloop import selectors as modelloop_selectors
from modelloop import services as modelloop_services

from ..models import Annotator, Assignment, AssignmentItem, Context, ItemReport, Judgment, Scenario
from .assignment import AssignmentExpired, assignment_renew
from .reports import page_comment_save, report_text_clean


@dataclass(frozen=True)
class RatingInput:
    scenario_id: int
    score: int
    modality: str


# What a page says beside a control left empty (the pages' script says the same before sending).
SCORE_MISSING = "Please choose a score from 1 to 5."
MODALITY_MISSING = "Please say what helped you decide: text, image or both."


def score_check(score) -> int:
    """Validate a score as typed (a form's string, or a number); return it or raise ValidationError."""
    if score is None or score == "":
        raise ValidationError(SCORE_MISSING, code="score_missing")
    if isinstance(score, bool):
        raise ValidationError("The score must be a whole number from 1 to 5.", code="score_invalid")
    if isinstance(score, str):
        if not score.strip().isdigit():
            raise ValidationError("The score must be a whole number from 1 to 5.", code="score_invalid")
        score = int(score.strip())
    if isinstance(score, float):
        if not score.is_integer():
            raise ValidationError("The score must be a whole number from 1 to 5.", code="score_invalid")
        score = int(score)
    if not isinstance(score, int) or not 1 <= score <= 5:
        raise ValidationError("The score must be a whole number from 1 to 5.", code="score_out_of_range")
    return score


def modality_check(modality) -> str:
    """Validate a modality as typed; return it or raise ValidationError."""
    if modality in (None, ""):
        raise ValidationError(MODALITY_MISSING, code="modality_missing")
    if modality not in Judgment.Modality.values:
        raise ValidationError(MODALITY_MISSING, code="modality_invalid")
    return modality


def rating_check(*, score, modality) -> tuple[int, str]:
    """Validate one rating as typed; return (score, modality) or raise ValidationError
    (about the score first; ``score_check`` and ``modality_check`` report each on its own)."""
    return score_check(score), modality_check(modality)


# Foreign keys of a judgment come from rows the service has just read or locked; checking
# each again in full_clean() would cost a query apiece (16 of a submit's 33). The database's
# own foreign-key constraints still guard them.
_JUDGMENT_FK_FIELDS = ["annotator", "scenario", "assignment", "model_version", "revises"]


def judgment_token(page_token: uuid.UUID, key: str) -> uuid.UUID:
    """Per-judgment idempotency token derived from the page's token (one per rendered form)."""
    return uuid.uuid5(page_token, key)


def assignment_submit_ratings(
    *,
    annotator: Annotator,
    assignment_id: int,
    ratings: list[RatingInput],
    page_token: uuid.UUID,
    renew_expired: bool = False,
    comment: str = "",
    now=None,
) -> list[Judgment]:
    """Store the initial judgments of one page, once, and its optional comment.

    Each judgment records the current model's score and the delta at this moment; where a
    score is missing, scoring is queued and the check is shown when it arrives. Scenarios
    the annotator reported (``item_report``) are skipped: the page is complete without
    them, and a rating given for one anyway is not stored. A repeated submit of the same
    page (same page token) returns the stored judgments. Each judgment's
    ``seconds_spent`` is the page's time on the server clock, from its first render
    (``assignment_mark_rendered``; a page never rendered counts from its creation), shared
    equally among its scenarios.
    Raises Assignment.DoesNotExist for someone else's page, AssignmentExpired /
    AssignmentNoLongerAvailable for a page past its time, ValidationError for bad ratings.
    """
    now = now or timezone.now()
    checked = [RatingInput(r.scenario_id, *rating_check(score=r.score, modality=r.modality)) for r in ratings]
    report_text_clean(comment, what="comment")  # refused before anything is written

    with transaction.atomic():
        assignment, items = _assignment_locked_with_items(annotator=annotator, assignment_id=assignment_id)
        reported = set(
            ItemReport.objects.filter(
                annotator=annotator, scenario_id__in=[i.scenario_id for i in items]
            ).values_list("scenario_id", flat=True)
        )
        items = [i for i in items if i.scenario_id not in reported]
        checked = [r for r in checked if r.scenario_id not in reported]
        tokens = {r.scenario_id: judgment_token(page_token, f"initial-{r.scenario_id}") for r in checked}
        if assignment.status not in (Assignment.Status.ACTIVE, Assignment.Status.EXPIRED):
            # A page's judgments are stored with the status change, so only a page past
            # rating can hold them: the same page submitted twice gets them back.
            existing = list(Judgment.objects.filter(annotator=annotator, client_token__in=tokens.values()))
            if existing:
                return existing
            raise ValidationError("This page was already submitted.", code="already_submitted")

        item_ids = {i.scenario_id for i in items}
        given_ids = [r.scenario_id for r in checked]
        if len(set(given_ids)) != len(given_ids) or set(given_ids) != item_ids:
            raise ValidationError("Please rate every scenario on the page.", code="ratings_incomplete")

        if assignment.status == Assignment.Status.EXPIRED or assignment.expires_at <= now:
            if not renew_expired:
                raise AssignmentExpired()
            assignment_renew(assignment=assignment, items=items, now=now)

        seconds_spent = _seconds_between(assignment.rendered_at or assignment.created_at, now) / max(1, len(checked))
        shown = modelloop_selectors.scores_shown(scenario_ids=given_ids)
        version = shown.version
        missing = [sid for sid in given_ids if shown.pending(sid)]
        scenarios = {i.scenario_id: i.scenario for i in items}
        judgments = []
        for r in checked:
            scenario = scenarios[r.scenario_id]
            model_score = shown.score(r.scenario_id)
            judgment = Judgment(
                annotator=annotator,
                scenario=scenario,
                assignment=assignment,
                score=r.score,
                modality=r.modality,
                phase=Judgment.Phase.INITIAL,
                model_version=version if model_score is not None else None,
                model_score=model_score,
                delta=abs(r.score - model_score) if model_score is not None else None,
                canary_passed=scenario.canary_accepts(r.score) if scenario.is_canary else None,
                seconds_spent=seconds_spent,
                client_token=tokens[r.scenario_id],
            )
            judgment.full_clean(exclude=_JUDGMENT_FK_FIELDS, validate_unique=False, validate_constraints=False)
            judgments.append(judgment)
        Judgment.objects.bulk_create(judgments)

        counted = sorted(s.pk for s in scenarios.values() if not s.is_canary)
        # One statement: the rows locked in id order (no deadlock), then counted up.
        in_id_order = Scenario.objects.filter(pk__in=counted).order_by("id").select_for_update().values("pk")
        Scenario.objects.filter(pk__in=in_id_order).update(judgment_count=F("judgment_count") + 1)
        if counted:
            Context.objects.filter(pk=assignment.context_id).update(judgment_count=F("judgment_count") + len(counted))
        assignment.status = Assignment.Status.SUBMITTED
        assignment.submitted_at = now
        assignment.save(update_fields=["status", "submitted_at"])
        page_comment_save(annotator=annotator, assignment=assignment, text=comment)
        if missing:
            modelloop_services.scoring_enqueue(
                scenario_ids=missing, model_version_id=version.pk if version else None
            )
    if any(j.pk is None for j in judgments):  # a backend that cannot return ids from a bulk insert
        return list(Judgment.objects.filter(annotator=annotator, client_token__in=tokens.values()))
    for judgment in judgments:
        Judgment.reconfirmation.related.set_cached_value(judgment, None)  # new: nothing reconfirms it yet
    return judgments


def _assignment_locked_with_items(*, annotator: Annotator, assignment_id: int) -> tuple[Assignment, list[AssignmentItem]]:
    """The annotator's assignment under SELECT FOR UPDATE, with its items and their
    scenarios, in one query (the items joined to the locked assignment row; items never
    change once a page is made). Raises Assignment.DoesNotExist for someone else's page."""
    items = list(
        AssignmentItem.objects.filter(assignment_id=assignment_id, assignment__annotator=annotator)
        .select_related("assignment", "scenario")
        .select_for_update(of=("assignment",))
        .order_by("position", "id")
    )
    if not items:
        return Assignment.objects.select_for_update().get(pk=assignment_id, annotator=annotator), []
    assignment = items[0].assignment
    for item in items:
        item.assignment = assignment
    return assignment, items


@dataclass(frozen=True)
class CheckAnswer:
    """One answer of a grounding-check page, with the model score that check showed."""

    judgment_id: int  # the initial judgment checked
    score: int | str
    modality: str
    model_score: float | None  # the model's score the page showed (None: it showed none)
    model_version_id: int | None  # the version that score came from


def judgments_reconfirm(
    *,
    annotator: Annotator,
    answers: list[CheckAnswer],
    page_token: uuid.UUID,
    now=None,
) -> list[Judgment]:
    """Store the answers of one grounding-check page as reconfirmed judgments (the first
    ones stay): all of them or none, in one transaction and one bulk write.

    ``seconds_spent`` of each is the time since its check was first shown
    (``checks_mark_shown``, server clock), shared among the page's answers; 0 for a check
    that was never shown.

    Each records the model score its check showed: the one stored with the initial
    judgment at submit, else the one the page carried (a score that arrived later).
    Idempotent: a check already answered (the same page sent twice, or the same check
    answered in another tab) keeps its first answer and is returned with the new ones.
    Raises Judgment.DoesNotExist when an id is not an initial judgment of this annotator,
    ValidationError for a bad answer; either way nothing is stored.
    """
    now = now or timezone.now()
    checked = [(a, *rating_check(score=a.score, modality=a.modality)) for a in answers]
    ids = sorted({a.judgment_id for a in answers})
    with transaction.atomic():
        check_shown_at = AssignmentItem.objects.filter(
            assignment_id=OuterRef("assignment_id"), scenario_id=OuterRef("scenario_id")
        ).values("check_shown_at")[:1]
        initials = {
            j.pk: j
            for j in Judgment.objects.select_related("scenario")
            .annotate(check_shown_at=Subquery(check_shown_at))
            .select_for_update(of=("self",))
            .filter(pk__in=ids, annotator=annotator, phase=Judgment.Phase.INITIAL)
            .order_by("id")  # id order: no deadlock with another page locking the same rows
        }
        if len(initials) != len(ids):
            raise Judgment.DoesNotExist("Not an initial judgment of this annotator.")
        answered = {j.revises_id: j for j in Judgment.objects.filter(revises_id__in=ids)}
        new = []
        for answer, score, modality in checked:
            initial = initials[answer.judgment_id]
            if initial.pk in answered:
                continue
            if initial.model_score is not None:
                shown, shown_version_id = initial.model_score, initial.model_version_id
            else:
                shown, shown_version_id = answer.model_score, answer.model_version_id
            judgment = Judgment(
                annotator=annotator,
                scenario=initial.scenario,
                assignment_id=initial.assignment_id,
                score=score,
                modality=modality,
                phase=Judgment.Phase.RECONFIRMED,
                revises=initial,
                model_version_id=shown_version_id if shown is not None else None,
                model_score=shown,
                delta=abs(score - shown) if shown is not None else None,
                canary_passed=initial.scenario.canary_accepts(score) if initial.scenario.is_canary else None,
                seconds_spent=_seconds_between(initial.check_shown_at or now, now) / max(1, len(answers)),
                client_token=judgment_token(page_token, f"check-{initial.pk}"),
            )
            judgment.full_clean(exclude=_JUDGMENT_FK_FIELDS, validate_unique=False, validate_constraints=False)
            answered[initial.pk] = judgment
            new.append(judgment)
        Judgment.objects.bulk_create(new)
    return [answered[a.judgment_id] for a in answers]


def judgment_reconfirm(
    *,
    annotator: Annotator,
    judgment_id: int,
    score,
    modality,
    page_token: uuid.UUID,
    now=None,
) -> Judgment:
    """Answer one grounding check (``judgments_reconfirm`` with one answer), recording the
    model score a check of it shows now: the one stored at submit, else the current one."""
    initial = Judgment.objects.only("scenario_id", "model_score").get(
        pk=judgment_id, annotator=annotator, phase=Judgment.Phase.INITIAL
    )
    shown = version_id = None
    if initial.model_score is None:
        current = modelloop_selectors.scores_shown(scenario_ids=[initial.scenario_id])
        shown = current.score(initial.scenario_id)
        version_id = current.version.pk if shown is not None else None
    answer = CheckAnswer(
        judgment_id=judgment_id, score=score, modality=modality, model_score=shown, model_version_id=version_id
    )
    return judgments_reconfirm(annotator=annotator, answers=[answer], page_token=page_token, now=now)[0]


# --- when pages were shown: the server's clock for seconds_spent ---------------------------
def _seconds_between(start, end) -> float:
    return max(0.0, (end - start).total_seconds())


def assignment_mark_rendered(*, assignment: Assignment, now=None) -> None:
    """Record when the rating page was first shown (later renders keep the first time)."""
    now = now or timezone.now()
    if assignment.rendered_at is None:
        Assignment.objects.filter(pk=assignment.pk, rendered_at__isnull=True).update(rendered_at=now)


def checks_mark_shown(*, annotator: Annotator, judgment_ids: list[int], now=None) -> None:
    """Record when the grounding checks of these initial judgments (the annotator's own)
    were first shown, on their pages' items; later renders keep the first time."""
    now = now or timezone.now()
    judged = Judgment.objects.filter(
        pk__in=judgment_ids,
        annotator=annotator,
        assignment_id=OuterRef("assignment_id"),
        scenario_id=OuterRef("scenario_id"),
    )
    AssignmentItem.objects.filter(Exists(judged), check_shown_at__isnull=True).update(check_shown_at=now)
