"""Writes of assignments (pages of work): claiming judgment slots, renewing, expiring, completing.

Concurrency: on PostgreSQL, an assignment claims judgment slots while holding row locks
on the scenarios it claims (SELECT ... FOR UPDATE, always in id order), and recounts the
claims after taking them, so two annotators asking at once never over-fill a scenario. On
SQLite the transactions are IMMEDIATE (see settings), which serialises writers.
"""

from __future__ import annotations

import random
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, Func, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..models import (
    Annotator,
    Assignment,
    AssignmentItem,
    Context,
    ImportedAggregate,
    ImportedRating,
    ItemReport,
    Judgment,
    Scenario,
)
from ..selectors import count_of, annotators_working_now, open_scenarios_for, untouched_participants_holding
from .routing import candidate_context_ids


# --- errors the views turn into messages ---------------------------------------------------
class AssignmentExpired(Exception):
    """The page was open longer than MORALE_ASSIGNMENT_TTL_MINUTES; its slots went back to the pool."""


class AssignmentNoLongerAvailable(Exception):
    """An expired page cannot be renewed: other annotators have filled its scenarios since."""


class AnnotatorNotActive(Exception):
    """Paused or screened-out annotators get no new work."""


class StudyFull(Exception):
    """MORALE_MAX_CONCURRENT_ANNOTATORS annotators hold a page already (or, for a newcomer,
    MORALE_MAX_UNTOUCHED_PARTICIPANTS newcomers hold a first page); come back later."""


# --- slots ---------------------------------------------------------------------------------
def _live_holds(now) -> Q:
    """Items that hold a slot: on an active page that has not expired."""
    return Q(assignment__status=Assignment.Status.ACTIVE, assignment__expires_at__gt=now)


def _claims(scenario_ids, *, now, excluding_assignment: Assignment | None = None) -> dict[int, int]:
    """Slots taken per scenario: initial judgments plus live holds of other pages, plus the
    imported ratings (and raters of imported means) that were imported to count towards
    the target; other imported ratings take no annotator's place.

    One query: a correlated count of each kind per scenario."""
    holds = AssignmentItem.objects.filter(_live_holds(now), scenario=OuterRef("pk"))
    if excluding_assignment is not None:
        holds = holds.exclude(assignment=excluding_assignment)
    raters = ImportedAggregate.objects.filter(scenario=OuterRef("pk"), counts_towards_target=True)
    rows = Scenario.objects.filter(pk__in=list(scenario_ids)).annotate(
        judged=count_of(Judgment.objects.filter(scenario=OuterRef("pk"), phase=Judgment.Phase.INITIAL)),
        held=count_of(holds),
        imported=count_of(ImportedRating.objects.filter(scenario=OuterRef("pk"), counts_towards_target=True)),
        imported_raters=Coalesce(Subquery(raters.order_by().values(n=Func(F("raters"), function="SUM"))[:1]), 0),
    )
    found = {sid: judged + held + imported + imported_raters for sid, judged, held, imported, imported_raters in
             rows.values_list("pk", "judged", "held", "imported", "imported_raters")}
    return {sid: found.get(sid, 0) for sid in scenario_ids}


# --- getting a page ------------------------------------------------------------------------
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


def assignment_get_or_create(
    *, annotator: Annotator, now=None, rng: random.Random | None = None, has_open_page: bool | None = None
) -> Assignment | None:
    """The annotator's open page, or a new one on the least-judged context with open slots.

    ``has_open_page=False``: the caller has just read that the annotator holds no open page
    (``selectors.next_page_state``), so it is not read again; one made meanwhile by another
    request of theirs is found when the claim hits the one-open-page constraint.

    Returns None when nothing is left for this annotator. An active page that has expired
    is marked expired first (its slots went back to the pool when it expired). Raises
    StudyFull over the caps, AnnotatorNotActive for a paused or screened-out annotator.
    """
    now = now or timezone.now()
    rng = rng or random.Random()
    if annotator.status != Annotator.Status.ACTIVE:
        raise AnnotatorNotActive(annotator.get_status_display())
    current = None if has_open_page is False else assignment_open_for(annotator=annotator)
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
    first_page = _is_untouched_participant(annotator)
    untouched_cap = settings.MORALE_MAX_UNTOUCHED_PARTICIPANTS
    # Soft in the same way; what gets past it together is bounded by the server's concurrency.
    if first_page and untouched_cap and untouched_participants_holding(now=now) >= untouched_cap:
        raise StudyFull(f"{untouched_cap} new participants hold a first page right now")

    per_page = settings.MORALE_SCENARIOS_PER_PAGE
    capacity = settings.MORALE_JUDGMENTS_PER_SCENARIO
    open_scenarios = open_scenarios_for(annotator)
    excluded_contexts: set[int] = set()
    while True:
        # MORALE_ROUTING orders them (routing.py): least-judged first, random among ties, or
        # toward the model's uncertainty within MORALE_ROUTING_SLACK of the least-judged.
        candidate_ids = candidate_context_ids(
            Context.objects.filter(is_active=True)
            .filter(Exists(open_scenarios.filter(context=OuterRef("pk"))))
            .exclude(pk__in=excluded_contexts),
            open_scenarios=open_scenarios, limit=CANDIDATE_CONTEXTS, rng=rng,
        )
        if not candidate_ids:
            return None
        for context_id in candidate_ids:
            assignment = _assignment_claim(
                annotator=annotator, context_id=context_id, now=now, rng=rng, per_page=per_page, capacity=capacity,
                first_page=first_page,
            )
            if assignment is not None:
                return assignment
        excluded_contexts.update(candidate_ids)


def _is_untouched_participant(annotator: Annotator) -> bool:
    """A crowd participant who has not submitted a page yet: their page is a first page."""
    if annotator.platform == Annotator.Platform.LOCAL:
        return False  # accounts the research team made (or self-signup) are not crowd entries
    return not Assignment.objects.filter(annotator=annotator, submitted_at__isnull=False).exists()


def _assignment_claim(*, annotator, context_id, now, rng, per_page, capacity, first_page=False) -> Assignment | None:
    """Try to claim up to `per_page` open scenarios of one context; None if none are left.

    A first page (``_is_untouched_participant``) holds its slots for
    MORALE_FIRST_PAGE_TTL_MINUTES, so a participant who opens it and leaves frees them soon.
    """
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
            ttl = settings.MORALE_FIRST_PAGE_TTL_MINUTES if first_page else settings.MORALE_ASSIGNMENT_TTL_MINUTES
            assignment = Assignment.objects.create(
                annotator=annotator,
                context_id=context_id,
                expires_at=now + timedelta(minutes=ttl),
                is_first_page=first_page,
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
    reported_by_me = ItemReport.objects.filter(scenario=OuterRef("pk"), annotator=annotator)
    ids = list(
        Scenario.objects.filter(
            context_id=context_id, is_canary=True, is_retired=False, review_status=Scenario.Review.ACCEPTED
        )
        .exclude(Exists(judged_by_me))
        .exclude(Exists(reported_by_me))
        .values_list("id", flat=True)
    )
    return rng.choice(ids) if ids else None


# --- after the page ------------------------------------------------------------------------
def assignment_renew(*, assignment: Assignment, items, now) -> None:
    """Give an expired page a new lease if every one of its scenarios still has a free slot.

    Call holding SELECT FOR UPDATE on the assignment (``assignment_submit_ratings`` does).
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


def assignment_complete(*, annotator: Annotator, assignment_id: int, now=None) -> bool:
    """Close the follow-up step of a submitted page (checks answered, scenario added or skipped).

    One UPDATE of a submitted page; a page in any other state is left as it is (False).
    Raises Assignment.DoesNotExist for someone else's page."""
    now = now or timezone.now()
    done = Assignment.objects.filter(pk=assignment_id, annotator=annotator, status=Assignment.Status.SUBMITTED).update(
        status=Assignment.Status.COMPLETED, completed_at=now
    )
    if not done and not Assignment.objects.filter(pk=assignment_id, annotator=annotator).exists():
        raise Assignment.DoesNotExist("Not a page of this annotator.")
    return bool(done)


def assignments_expire(*, now=None) -> int:
    """Periodic housekeeping: mark pages past their time as expired (their holds already lapsed)."""
    now = now or timezone.now()
    return Assignment.objects.filter(status=Assignment.Status.ACTIVE, expires_at__lte=now).update(
        status=Assignment.Status.EXPIRED
    )
