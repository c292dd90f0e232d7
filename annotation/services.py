"""Writes of the annotation app: annotators, contexts, scenarios, assignments, judgments.

Every function here is keyword-only, validates before it writes and runs in one
transaction. Views call exactly one of these (or a selector) per request.

Concurrency: on PostgreSQL, an assignment claims judgment slots while holding row locks
on the scenarios it claims (SELECT ... FOR UPDATE, always in id order), and recounts the
claims after taking them, so two annotators asking at once never over-fill a scenario. On
SQLite the transactions are IMMEDIATE (see settings), which serialises writers.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.utils import timezone

from modelloop import selectors as modelloop_selectors
from modelloop import services as modelloop_services

from .images import check_image_upload
from .selectors import annotators_working_now, open_scenarios_for
from .models import Annotator, Assignment, AssignmentItem, Context, Judgment, Scenario


# --- errors the views turn into messages ---------------------------------------------------
class AssignmentExpired(Exception):
    """The page was open longer than MORALE_ASSIGNMENT_TTL_MINUTES; its slots went back to the pool."""


class AssignmentNoLongerAvailable(Exception):
    """An expired page cannot be renewed: other annotators have filled its scenarios since."""


class AnnotatorNotActive(Exception):
    """Paused or screened-out annotators get no new work."""


class StudyFull(Exception):
    """MORALE_MAX_CONCURRENT_ANNOTATORS annotators hold a page already; come back later."""


# --- annotators ------------------------------------------------------------------------------
@transaction.atomic
def annotator_create(*, username: str, password: str) -> Annotator:
    user = get_user_model().objects.create_user(username=username, password=password)
    annotator = Annotator(user=user)
    annotator.full_clean()
    annotator.save()
    return annotator


def annotator_for_user(*, user) -> Annotator:
    """The user's annotator profile, created on first use (e.g. a researcher trying the flow)."""
    return Annotator.objects.get_or_create(user=user)[0]


def annotator_record_consent(*, annotator: Annotator, version: str) -> Annotator:
    annotator.consent_version = version
    annotator.consented_at = timezone.now()
    annotator.full_clean()
    annotator.save(update_fields=["consent_version", "consented_at"])
    return annotator


# --- contexts and scenarios ------------------------------------------------------------------
@transaction.atomic
def context_create(
    *,
    image_file,
    setting: str,
    source: str = "",
    image_origin: str = Context.ImageOrigin.REAL,
    image_unreliable: bool = False,
) -> Context:
    """Store a new context after checking that its file really is an acceptable image."""
    checked = check_image_upload(image_file)
    context = Context(
        image=image_file,
        image_sha256=checked.sha256,
        setting=(setting or "").strip(),
        source=source.strip(),
        image_origin=image_origin,
        image_unreliable=image_unreliable,
    )
    context.full_clean()
    context.save()
    return context


def scenario_text_clean(text) -> str:
    """Normalise and check a scenario text; raise ValidationError with a readable message."""
    if not isinstance(text, str):
        raise ValidationError("The scenario must be text.", code="scenario_type")
    cleaned = " ".join(text.split())  # collapse whitespace and newlines
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
) -> Scenario:
    """Create a scenario and queue its scoring by the current model once committed."""
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
    )
    scenario.full_clean()
    scenario.save()
    modelloop_services.scoring_enqueue(scenario_ids=[scenario.pk])
    return scenario


# --- assignment -------------------------------------------------------------------------------
def _live_holds(now) -> Q:
    """Items that hold a slot: on an active page that has not expired."""
    return Q(assignment__status=Assignment.Status.ACTIVE, assignment__expires_at__gt=now)


def _claims(scenario_ids, *, now, excluding_assignment: Assignment | None = None) -> dict[int, int]:
    """Slots taken per scenario: initial judgments plus live holds of other pages."""
    judged = dict(
        Judgment.objects.filter(scenario_id__in=scenario_ids, phase=Judgment.Phase.INITIAL)
        .values_list("scenario_id")
        .annotate(n=Count("id"))
    )
    holds = AssignmentItem.objects.filter(_live_holds(now), scenario_id__in=scenario_ids)
    if excluding_assignment is not None:
        holds = holds.exclude(assignment=excluding_assignment)
    held = dict(holds.values_list("scenario_id").annotate(n=Count("id")))
    return {sid: judged.get(sid, 0) + held.get(sid, 0) for sid in scenario_ids}


def assignment_open_for(*, annotator: Annotator) -> Assignment | None:
    """The annotator's page in progress (active or awaiting its follow-up step), if any."""
    return (
        Assignment.objects.filter(
            annotator=annotator, status__in=[Assignment.Status.ACTIVE, Assignment.Status.SUBMITTED]
        )
        .select_related("context")
        .first()
    )


CANDIDATE_CONTEXTS = 8  # contexts tried per request, least-judged first


def assignment_get_or_create(*, annotator: Annotator, now=None, rng: random.Random | None = None) -> Assignment | None:
    """The annotator's open page, or a new one on the least-judged context with open slots.

    Returns None when nothing is left for this annotator. An active page that has expired
    is marked expired first (its slots went back to the pool when it expired).
    """
    now = now or timezone.now()
    rng = rng or random.Random()
    if annotator.status != Annotator.Status.ACTIVE:
        raise AnnotatorNotActive(annotator.get_status_display())
    current = assignment_open_for(annotator=annotator)
    if current is not None:
        if current.status == Assignment.Status.ACTIVE and current.expires_at <= now:
            Assignment.objects.filter(pk=current.pk, status=Assignment.Status.ACTIVE).update(
                status=Assignment.Status.EXPIRED
            )
        else:
            return current

    cap = settings.MORALE_MAX_CONCURRENT_ANNOTATORS
    # A soft cap (checked, not locked): two annotators arriving together may both pass it.
    if cap and annotators_working_now(now=now) >= cap:
        raise StudyFull(f"{cap} annotators are working right now")

    per_page = settings.MORALE_SCENARIOS_PER_PAGE
    capacity = settings.MORALE_JUDGMENTS_PER_SCENARIO
    open_scenarios = open_scenarios_for(annotator)
    excluded_contexts: set[int] = set()
    while True:
        candidate_ids = list(
            Context.objects.filter(is_active=True)
            .filter(Exists(open_scenarios.filter(context=OuterRef("pk"))))
            .exclude(pk__in=excluded_contexts)
            .order_by("judgment_count", "?")  # least-judged first, random among ties
            .values_list("pk", flat=True)[:CANDIDATE_CONTEXTS]
        )
        if not candidate_ids:
            return None
        for context_id in candidate_ids:
            assignment = _assignment_claim(
                annotator=annotator, context_id=context_id, now=now, rng=rng, per_page=per_page, capacity=capacity
            )
            if assignment is not None:
                return assignment
        excluded_contexts.update(candidate_ids)


def _assignment_claim(*, annotator, context_id, now, rng, per_page, capacity) -> Assignment | None:
    """Try to claim up to `per_page` open scenarios of one context; None if none are left."""
    try:
        with transaction.atomic():
            # Lock the candidate rows in id order (every writer of scenario rows locks in
            # that order, so there is no deadlock). A request claiming the same context
            # waits here for a few milliseconds, then recounts what is left. SKIP LOCKED
            # would be faster but sends the waiter away empty-handed while slots remain.
            locked_ids = list(
                open_scenarios_for(annotator)
                .filter(context_id=context_id)
                .select_for_update(of=("self",))
                .order_by("id")
                .values_list("id", flat=True)
            )
            claims = _claims(locked_ids, now=now)  # recounted under the locks
            free = [sid for sid in locked_ids if claims[sid] < capacity]
            if not free:
                return None
            rng.shuffle(free)
            free.sort(key=lambda sid: claims[sid])  # least-claimed first; shuffled among ties
            chosen = free[:per_page]
            canary = _maybe_canary(annotator=annotator, context_id=context_id, rng=rng)
            if canary is not None:
                chosen = chosen[: per_page - 1] + [canary]
            rng.shuffle(chosen)  # scenarios appear in random order on the page
            assignment = Assignment.objects.create(
                annotator=annotator,
                context_id=context_id,
                expires_at=now + timedelta(minutes=settings.MORALE_ASSIGNMENT_TTL_MINUTES),
            )
            AssignmentItem.objects.bulk_create(
                AssignmentItem(assignment=assignment, scenario_id=sid, position=i) for i, sid in enumerate(chosen)
            )
            return assignment
    except IntegrityError:
        # A second request of the same annotator created their open page meanwhile.
        return assignment_open_for(annotator=annotator)


def _maybe_canary(*, annotator, context_id, rng) -> int | None:
    if rng.random() >= settings.MORALE_CANARY_RATE:
        return None
    judged_by_me = Judgment.objects.filter(scenario=OuterRef("pk"), annotator=annotator)
    ids = list(
        Scenario.objects.filter(context_id=context_id, is_canary=True, is_retired=False)
        .exclude(Exists(judged_by_me))
        .values_list("id", flat=True)
    )
    return rng.choice(ids) if ids else None


def assignments_expire(*, now=None) -> int:
    """Periodic housekeeping: mark pages past their time as expired (their holds already lapsed)."""
    now = now or timezone.now()
    return Assignment.objects.filter(status=Assignment.Status.ACTIVE, expires_at__lte=now).update(
        status=Assignment.Status.EXPIRED
    )


# --- judgments --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RatingInput:
    scenario_id: int
    score: int
    modality: str


def rating_check(*, score, modality) -> tuple[int, str]:
    """Validate one rating as typed; return (score, modality) or raise ValidationError."""
    if score is None or score == "":
        raise ValidationError("Please choose a score from 1 to 5.", code="score_missing")
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
    if modality not in Judgment.Modality.values:
        raise ValidationError(
            "Please say what helped you decide: text, image or both.", code="modality_invalid"
        )
    return score, modality


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
    seconds_spent: float | None = None,
    renew_expired: bool = False,
    now=None,
) -> list[Judgment]:
    """Store the initial judgments of one page, once.

    Each judgment records the current model's score and the delta at this moment; where a
    score is missing, scoring is queued and the check is shown when it arrives. A repeated
    submit of the same page (same page token) returns the stored judgments.
    Raises Assignment.DoesNotExist for someone else's page, AssignmentExpired /
    AssignmentNoLongerAvailable for a page past its time, ValidationError for bad ratings.
    """
    now = now or timezone.now()
    checked = [RatingInput(r.scenario_id, *rating_check(score=r.score, modality=r.modality)) for r in ratings]
    if seconds_spent is not None and seconds_spent < 0:
        seconds_spent = None
    tokens = {r.scenario_id: judgment_token(page_token, f"initial-{r.scenario_id}") for r in checked}

    with transaction.atomic():
        assignment = Assignment.objects.select_for_update().get(pk=assignment_id, annotator=annotator)
        existing = list(Judgment.objects.filter(annotator=annotator, client_token__in=tokens.values()))
        if existing:
            return existing  # the same page submitted twice: already stored
        if assignment.status not in (Assignment.Status.ACTIVE, Assignment.Status.EXPIRED):
            raise ValidationError("This page was already submitted.", code="already_submitted")

        items = list(assignment.items.select_related("scenario"))
        item_ids = {i.scenario_id for i in items}
        given_ids = [r.scenario_id for r in checked]
        if len(set(given_ids)) != len(given_ids) or set(given_ids) != item_ids:
            raise ValidationError("Please rate every scenario on the page.", code="ratings_incomplete")

        if assignment.status == Assignment.Status.EXPIRED or assignment.expires_at <= now:
            if not renew_expired:
                raise AssignmentExpired()
            _assignment_renew(assignment=assignment, items=items, now=now)

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
        list(Scenario.objects.select_for_update().filter(pk__in=counted).order_by("id"))  # id order: no deadlock
        Scenario.objects.filter(pk__in=counted).update(judgment_count=F("judgment_count") + 1)
        if counted:
            Context.objects.filter(pk=assignment.context_id).update(judgment_count=F("judgment_count") + len(counted))
        assignment.status = Assignment.Status.SUBMITTED
        assignment.submitted_at = now
        assignment.save(update_fields=["status", "submitted_at"])
        if missing:
            modelloop_services.scoring_enqueue(
                scenario_ids=missing, model_version_id=version.pk if version else None
            )
    return list(Judgment.objects.filter(annotator=annotator, client_token__in=tokens.values()))


def _assignment_renew(*, assignment: Assignment, items, now) -> None:
    """Give an expired page a new lease if every one of its scenarios still has a free slot.

    Call holding SELECT FOR UPDATE on the assignment.
    """
    ids = sorted(i.scenario_id for i in items if not i.scenario.is_canary)
    list(Scenario.objects.select_for_update().filter(pk__in=ids).order_by("id"))
    claims = _claims(ids, now=now, excluding_assignment=assignment)
    if any(claims[sid] >= settings.MORALE_JUDGMENTS_PER_SCENARIO for sid in ids):
        raise AssignmentNoLongerAvailable()
    if assignment_open_for(annotator=assignment.annotator) not in (None, assignment):
        raise AssignmentNoLongerAvailable()
    assignment.status = Assignment.Status.ACTIVE
    assignment.expires_at = now + timedelta(minutes=settings.MORALE_ASSIGNMENT_TTL_MINUTES)
    assignment.save(update_fields=["status", "expires_at"])


def judgment_reconfirm(
    *,
    annotator: Annotator,
    judgment_id: int,
    score,
    modality,
    page_token: uuid.UUID,
    seconds_spent: float | None = None,
) -> Judgment:
    """Store the answer to a grounding check as a new reconfirmed judgment (the first stays).

    Records the model score the annotator was shown. Idempotent per judgment: a second
    answer to the same check returns the first one.
    """
    score, modality = rating_check(score=score, modality=modality)
    with transaction.atomic():
        initial = (
            Judgment.objects.select_related("scenario")
            .select_for_update(of=("self",))
            .get(pk=judgment_id, annotator=annotator, phase=Judgment.Phase.INITIAL)
        )
        already = Judgment.objects.filter(revises=initial).first()
        if already is not None:
            return already
        shown = initial.model_score
        shown_version = initial.model_version
        if shown is None:  # the score arrived after submit: the check showed the current one
            current = modelloop_selectors.scores_shown(scenario_ids=[initial.scenario_id])
            shown = current.score(initial.scenario_id)
            shown_version = current.version if shown is not None else None
        judgment = Judgment(
            annotator=annotator,
            scenario=initial.scenario,
            assignment_id=initial.assignment_id,
            score=score,
            modality=modality,
            phase=Judgment.Phase.RECONFIRMED,
            revises=initial,
            model_version=shown_version,
            model_score=shown,
            delta=abs(score - shown) if shown is not None else None,
            canary_passed=initial.scenario.canary_accepts(score) if initial.scenario.is_canary else None,
            seconds_spent=seconds_spent if seconds_spent is None or seconds_spent >= 0 else None,
            client_token=judgment_token(page_token, f"check-{initial.pk}"),
        )
        judgment.full_clean(exclude=_JUDGMENT_FK_FIELDS, validate_unique=False, validate_constraints=False)
        judgment.save()
        return judgment


def assignment_complete(*, annotator: Annotator, assignment_id: int, now=None) -> Assignment:
    """Close the follow-up step of a submitted page (checks answered, scenario added or skipped)."""
    now = now or timezone.now()
    with transaction.atomic():
        assignment = Assignment.objects.select_for_update().get(pk=assignment_id, annotator=annotator)
        if assignment.status == Assignment.Status.SUBMITTED:
            assignment.status = Assignment.Status.COMPLETED
            assignment.completed_at = now
            assignment.save(update_fields=["status", "completed_at"])
    return assignment


def scenario_add_by_annotator(*, annotator: Annotator, assignment_id: int, text: str) -> Scenario:
    """The add-scenario step: a new action for the same image, written by the annotator.

    The scenario enters the pool for other annotators and is scored at once. Submitting
    the same text twice (a double click) returns the scenario written the first time.
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
        )
        assignment_complete(annotator=annotator, assignment_id=assignment.pk)
    return scenario


# --- researchers' bulk actions (admin, API) ----------------------------------------------------
def scenarios_set_retired(*, scenario_ids, retired: bool = True) -> int:
    """Retire scenarios (no new pages show them; their judgments stay and are exported) or
    bring them back. Returns how many changed."""
    return Scenario.objects.filter(pk__in=list(scenario_ids)).exclude(is_retired=retired).update(is_retired=retired)
