"""Reads of the annotation app: what a page shows, which step comes next, who may read what.

Views, the API and the admin read through these; the services use the slot counts. Only
``modelloop.selectors`` is read from the model loop (the score shown).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Case, Count, Exists, F, Func, OuterRef, Prefetch, Q, Subquery, Sum, When, Window
from django.db.models.functions import Coalesce
from django.utils import timezone

from modelloop import selectors as modelloop_selectors

from .models import (
    Annotator,
    Assignment,
    AssignmentItem,
    Context,
    InstructionsVersion,
    ItemReport,
    Judgment,
    OnboardingRecord,
    PracticeItem,
    PracticeRound,
    Scenario,
)


def assignment_for_annotator(*, annotator: Annotator, assignment_id: int) -> Assignment:
    """An assignment of this annotator with its context and scenarios (404 for anyone else's).

    One query: the page's items joined with their scenario, the assignment and its context;
    ``assignment.items.all()`` then reads them without a query (as ``prefetch_related``
    would, in one round trip instead of three). A page without items falls back to a get."""
    reported = ItemReport.objects.filter(annotator=annotator, scenario_id=OuterRef("scenario_id"))
    items = list(
        AssignmentItem.objects.filter(assignment_id=assignment_id, assignment__annotator=annotator)
        .select_related("scenario", "assignment__context")
        .annotate(has_report=Exists(reported))  # reports_on_page asks only when one is
        .order_by("position", "id")
    )
    if not items:
        return Assignment.objects.select_related("context").prefetch_related("items").get(
            pk=assignment_id, annotator=annotator
        )
    assignment = items[0].assignment
    for item in items:
        item.assignment = assignment  # one shared instance, as a prefetch would give
    cached = assignment.items.all()
    cached._result_cache, cached._prefetch_done = items, True
    assignment._prefetched_objects_cache = {"items": cached}
    return assignment


@dataclass(frozen=True)
class ReviewItem:
    judgment: Judgment
    model_score: float | None  # None: no score yet (pending) or the model failed on the pair
    pending: bool  # scoring not finished
    reconfirmation: Judgment | None
    model_version_id: int | None = None  # the version model_score comes from

    @property
    def delta(self) -> float | None:
        return None if self.model_score is None else abs(self.judgment.score - self.model_score)

    @property
    def disagrees(self) -> bool:
        return self.delta is not None and self.delta >= settings.MORALE_DISAGREEMENT_THRESHOLD

    @property
    def agrees(self) -> bool:
        return self.delta is not None and not self.disagrees

    @property
    def needs_check(self) -> bool:
        return self.disagrees and self.reconfirmation is None


def review_items(judgments: list[Judgment]) -> list[ReviewItem]:
    """Compare initial judgments with the model: the score stored at submit, else the current one."""
    late_ids = [j.scenario_id for j in judgments if j.model_score is None]
    late = modelloop_selectors.scores_shown(scenario_ids=late_ids) if late_ids else None
    if all(Judgment.reconfirmation.is_cached(j) for j in judgments):  # read with select_related("reconfirmation")
        reconfirmations = {j.pk: _reconfirmation_or_none(j) for j in judgments}
    else:
        reconfirmations = {
            j.revises_id: j for j in Judgment.objects.filter(revises__in=[j.pk for j in judgments])
        }
    items = []
    for j in judgments:
        if j.model_score is not None:
            score, pending, version_id = j.model_score, False, j.model_version_id
        else:
            score, pending = late.score(j.scenario_id), late.pending(j.scenario_id)
            version_id = late.version.pk if score is not None else None
        items.append(
            ReviewItem(
                judgment=j,
                model_score=score,
                pending=pending,
                reconfirmation=reconfirmations.get(j.pk),
                model_version_id=version_id,
            )
        )
    return items


def _reconfirmation_or_none(judgment: Judgment) -> Judgment | None:
    try:
        return judgment.reconfirmation
    except Judgment.DoesNotExist:
        return None


def check_items_shown(
    *, annotator: Annotator, shown: list[tuple[int, float | None, int | None]], assignment_id: int | None = None
) -> list[ReviewItem]:
    """The grounding checks a page showed, as it showed them, in its order: ``shown`` is
    what the form carried, (initial judgment id, model score shown, its version id) each.
    Judgments that are not initial ones of this annotator (or of that page) are left out."""
    ids = [jid for jid, _, _ in shown]
    judgments = Judgment.objects.filter(pk__in=ids, annotator=annotator, phase=Judgment.Phase.INITIAL)
    if assignment_id is not None:
        judgments = judgments.filter(assignment_id=assignment_id)
    by_id = {j.pk: j for j in judgments.select_related("scenario", "scenario__context", "reconfirmation")}
    reconfirmations = {jid: _reconfirmation_or_none(j) for jid, j in by_id.items()}
    return [
        ReviewItem(
            judgment=by_id[jid],
            model_score=score,
            pending=False,
            reconfirmation=reconfirmations.get(jid),
            model_version_id=version_id,
        )
        for jid, score, version_id in shown
        if jid in by_id
    ]


def assignment_review(*, assignment: Assignment) -> list[ReviewItem]:
    judgments = list(
        Judgment.objects.filter(assignment=assignment, phase=Judgment.Phase.INITIAL)
        .select_related("scenario", "reconfirmation")
        .order_by("id")
    )
    return review_items(judgments)


def assignment_review_for(*, annotator: Annotator, assignment_id: int) -> tuple[Assignment, list[ReviewItem]]:
    """An assignment of this annotator (Assignment.DoesNotExist for anyone else's) with the
    review of its initial judgments, in one query: the judgments joined with their scenario,
    reconfirmation, assignment and its context (a page without judgments: a second query)."""
    judgments = list(
        Judgment.objects.filter(assignment_id=assignment_id, annotator=annotator, phase=Judgment.Phase.INITIAL)
        .select_related("scenario", "reconfirmation", "assignment__context")
        .order_by("id")
    )
    if not judgments:
        return Assignment.objects.select_related("context").get(pk=assignment_id, annotator=annotator), []
    assignment = judgments[0].assignment
    for j in judgments:
        j.assignment = assignment
    return assignment, review_items(judgments)


def check_items_among(items: list[ReviewItem], shown: list[tuple[int, float | None, int | None]]) -> list[ReviewItem]:
    """``check_items_shown`` for a page whose review is at hand: the checks the form showed,
    as it showed them, in its order, from ``items`` (that page's review); ids not among them
    are left out."""
    by_id = {i.judgment.pk: i for i in items}
    return [
        ReviewItem(
            judgment=by_id[jid].judgment,
            model_score=score,
            pending=False,
            reconfirmation=by_id[jid].reconfirmation,
            model_version_id=version_id,
        )
        for jid, score, version_id in shown
        if jid in by_id
    ]


@dataclass(frozen=True)
class NextStep:
    name: str  # "rate" | "wait" | "check" | "add" | "done"
    items: list[ReviewItem]


def assignment_next_step(*, assignment: Assignment, now=None, judgments: list[Judgment] | None = None) -> NextStep:
    """Where a page goes after rating (paper, fig. 4). ``judgments``: the page's initial
    judgments in id order, when the caller has just read or written them.

    Disagreements get grounding checks; while scores are missing the page polls for up to
    MORALE_SCORE_WAIT_SECONDS, then lets the annotator go on (the check is offered later
    in the session). With no disagreement the add-scenario prompt follows, by default only
    when every scenario agreed (MORALE_ADD_SCENARIO_WHEN).
    """
    now = now or timezone.now()
    if assignment.status in (Assignment.Status.ACTIVE, Assignment.Status.EXPIRED):
        return NextStep("rate", [])
    items = assignment_review(assignment=assignment) if judgments is None else review_items(judgments)
    if assignment.status == Assignment.Status.COMPLETED:
        return NextStep("done", items)
    if any(i.needs_check for i in items):
        return NextStep("check", items)
    waited = now - (assignment.submitted_at or now)
    if any(i.pending for i in items) and waited < timedelta(seconds=settings.MORALE_SCORE_WAIT_SECONDS):
        return NextStep("wait", items)
    if settings.MORALE_ADD_SCENARIO_WHEN == "any_agree":
        offer_add = any(i.agrees for i in items)
    else:
        offer_add = bool(items) and all(i.agrees for i in items)
    return NextStep("add" if offer_add else "done", items)


# One working session: the late checks are offered, and the session's pages counted, within it.
WORKING_SESSION = timedelta(hours=12)
LATE_CHECK_WINDOW = WORKING_SESSION


def late_checks_for(*, annotator: Annotator, now=None) -> list[ReviewItem]:
    """Grounding checks whose model score arrived after the annotator moved on.

    Offered at the start of the next page, within the same working session (12 hours).
    """
    now = now or timezone.now()
    judgments = list(
        Judgment.objects.filter(
            annotator=annotator,
            phase=Judgment.Phase.INITIAL,
            model_score__isnull=True,
            created_at__gte=now - LATE_CHECK_WINDOW,
            assignment__status=Assignment.Status.COMPLETED,
            reconfirmation__isnull=True,
        )
        .select_related("scenario", "scenario__context", "reconfirmation")
        .order_by("id")
    )
    return [i for i in review_items(judgments) if i.needs_check] if judgments else []


# How many of the annotator's latest pages set their pace (the median page time).
PACE_PAGES = 10


@dataclass(frozen=True)
class Progress:
    pages_done: int  # every page completed
    judgments_done: int  # every initial judgment
    contexts_left: int  # images this annotator may still rate
    session_pages: int = 0  # pages completed in this working session
    session_target: int = 0  # MORALE_SESSION_TARGET_PAGES (0: no target)
    seconds_per_page: float | None = None  # median time of their latest pages; None before the first

    @property
    def share(self) -> int | None:
        """Per cent of the session's target done (at most 100), None without a target."""
        if not self.session_target:
            return None
        return min(100, math.floor(100 * self.session_pages / self.session_target))

    @property
    def target_reached(self) -> bool:
        return bool(self.session_target) and self.session_pages >= self.session_target

    @property
    def pages_to_go(self) -> int:
        """Pages left to the target (or to the images left, if fewer); without a target, the images left."""
        if not self.session_target:
            return self.contexts_left
        return max(0, min(self.session_target - self.session_pages, self.contexts_left))

    @property
    def few_images_left(self) -> bool:
        """Whether the images left, not the target, end this session (or there is no target)."""
        return not self.session_target or self.contexts_left < self.session_target - self.session_pages

    @property
    def minutes_left(self) -> int | None:
        """Estimated minutes for ``pages_to_go`` at the annotator's own pace (rounded up)."""
        if self.seconds_per_page is None or not self.pages_to_go:
            return None
        return max(1, math.ceil(self.seconds_per_page * self.pages_to_go / 60))


def open_scenarios_for(annotator: Annotator):
    """Scenarios this annotator may still rate: active, accepted (not held for review or by
    reports), not canary, not full, not written, rated or reported by them."""
    judged_by_me = Judgment.objects.filter(scenario=OuterRef("pk"), annotator=annotator)
    reported_by_me = ItemReport.objects.filter(scenario=OuterRef("pk"), annotator=annotator)
    return (
        Scenario.objects.filter(
            is_retired=False, is_canary=False, context__is_active=True, review_status=Scenario.Review.ACCEPTED
        )
        .filter(judgment_count__lt=settings.MORALE_JUDGMENTS_PER_SCENARIO)
        .exclude(author=annotator)
        .exclude(Exists(judged_by_me))
        .exclude(Exists(reported_by_me))
    )


def reports_on_page(*, annotator: Annotator, assignment: Assignment) -> dict[int, ItemReport]:
    """The annotator's reports of the scenarios on this page, by scenario id (those are skipped).

    No query for a page read by ``assignment_for_annotator`` without a report on it."""
    items = getattr(assignment, "_prefetched_objects_cache", {}).get("items")
    if items is not None and items and all(hasattr(i, "has_report") for i in items):
        if not any(i.has_report for i in items):
            return {}
    on_page = AssignmentItem.objects.filter(assignment=assignment).values("scenario_id")
    return {r.scenario_id: r for r in ItemReport.objects.filter(annotator=annotator, scenario_id__in=on_page)}


def scenarios_with_report_count(scenarios):
    """The scenarios with ``report_total`` (every report) and ``report_open`` (not yet decided).

    Correlated counts, like ``annotators_with_judgment_total``: evaluated for the rows shown.
    """
    def count(**filters):
        rows = ItemReport.objects.filter(scenario=OuterRef("pk"), **filters).order_by().values("scenario")
        return Coalesce(Subquery(rows.annotate(n=Count("pk")).values("n")), 0)

    return scenarios.annotate(report_total=count(), report_open=count(decision=ItemReport.Decision.OPEN))


def count_of(queryset):
    """A scalar subquery: how many rows ``queryset`` has (COUNT without GROUP BY: one row)."""
    return Coalesce(Subquery(queryset.order_by().values(n=Func(F("pk"), function="COUNT"))[:1]), 0)


def annotator_progress(*, annotator: Annotator, now=None) -> Progress:
    """Pages and ratings done, images left, this session's pages against its target, and the
    annotator's pace: the median time from opening a page to finishing it (check and new
    scenario included) over their latest PACE_PAGES pages, each counted at most the page's
    time to live (a page left open over a break would skew it).

    One query once a page is completed: the latest pages, with the counts beside each row
    (window counts over every completed page, scalar subqueries for the rest)."""
    now = now or timezone.now()
    open_for_me = open_scenarios_for(annotator).filter(context=OuterRef("pk"))
    completed = Assignment.objects.filter(annotator=annotator, status=Assignment.Status.COMPLETED)
    session_start = now - WORKING_SESSION
    counts = {
        "judgments_done": count_of(Judgment.objects.filter(annotator=annotator, phase=Judgment.Phase.INITIAL)),
        "contexts_left": count_of(Context.objects.filter(is_active=True).filter(Exists(open_for_me))),
    }
    latest = list(
        completed.order_by("-completed_at")
        .annotate(
            pages_done=Window(Count("id")),
            session_pages=Window(Sum(Case(When(completed_at__gte=session_start, then=1), default=0))),
            **counts,
        )
        .values_list("created_at", "completed_at", "pages_done", "session_pages", *counts)[:PACE_PAGES]
    )
    if latest:
        pages_done, session_pages, judgments_done, contexts_left = latest[0][2:]
    else:  # no page completed yet: the two counts alone
        pages_done = session_pages = 0
        judgments_done, contexts_left = (
            Annotator.objects.filter(pk=annotator.pk).annotate(**counts).values_list(*counts).get()
        )
    longest = settings.MORALE_ASSIGNMENT_TTL_MINUTES * 60
    durations = [min(longest, (done - opened).total_seconds()) for opened, done, *_ in latest if done and opened]
    return Progress(
        pages_done=pages_done,
        judgments_done=judgments_done,
        contexts_left=contexts_left,
        session_pages=session_pages or 0,
        session_target=max(0, settings.MORALE_SESSION_TARGET_PAGES),
        seconds_per_page=statistics.median(durations) if durations else None,
    )


# --- onboarding: instructions and practice (versioned like the consent) -------------------
def instructions_versions():
    """Instructions versions, newest (the one annotators get) first."""
    return InstructionsVersion.objects.order_by("-id")


def instructions_current() -> InstructionsVersion | None:
    """The instructions annotators get: the newest version (None: a researcher deleted them all)."""
    return instructions_versions().first()


def practice_rounds_offered():
    """Practice rounds annotators may get, newest first: those with items, none when
    MORALE_PRACTICE_ENABLED is off."""
    if not settings.MORALE_PRACTICE_ENABLED:
        return PracticeRound.objects.none()
    has_items = Exists(PracticeItem.objects.filter(practice_round=OuterRef("pk")))
    return PracticeRound.objects.filter(has_items).order_by("-id")


def practice_current() -> PracticeRound | None:
    """The practice round annotators get (the newest with items), its items prefetched."""
    return practice_rounds_offered().prefetch_related("items").first()


def _onboarding_columns():
    steps = [(OnboardingRecord.Step.INSTRUCTIONS, instructions_versions())]
    if settings.MORALE_PRACTICE_ENABLED:
        steps.append((OnboardingRecord.Step.PRACTICE, practice_rounds_offered()))
    columns = {}
    for step, versions in steps:
        current = Subquery(versions.values("version")[:1])
        columns[f"{step.value}_version"] = current
        columns[f"{step.value}_done"] = Exists(
            OnboardingRecord.objects.filter(annotator=OuterRef("pk"), step=step, version=current)
        )
    return [step for step, _ in steps], columns


def _onboarding_due(steps, row) -> str | None:
    for step in steps:
        if row[f"{step.value}_version"] is not None and not row[f"{step.value}_done"]:
            return str(step)
    return None


def onboarding_next_step(*, annotator: Annotator) -> str | None:
    """"instructions" or "practice" while the annotator has not done the current version of
    it, else None. Asked when a new page starts, so a new version never interrupts a page.

    One query: the current versions and whether the annotator has a record of each."""
    steps, columns = _onboarding_columns()
    row = Annotator.objects.filter(pk=annotator.pk).annotate(**columns).values(*columns).get()
    return _onboarding_due(steps, row)


@dataclass(frozen=True)
class NextPageState:
    onboarding: str | None  # onboarding_next_step
    may_have_late_checks: bool  # a completed page's judgment still without a score (late_checks_for asks)
    has_open_page: bool  # an active or submitted page (assignment_open_for reads it)


def next_page_state(*, annotator: Annotator, now=None) -> NextPageState:
    """What the next-page redirect asks first, in one query: the onboarding step due, whether
    late checks may be due, whether the annotator holds an open page."""
    now = now or timezone.now()
    steps, columns = _onboarding_columns()
    late = Judgment.objects.filter(
        annotator=OuterRef("pk"),
        phase=Judgment.Phase.INITIAL,
        model_score__isnull=True,
        created_at__gte=now - LATE_CHECK_WINDOW,
        assignment__status=Assignment.Status.COMPLETED,
        reconfirmation__isnull=True,
    )
    open_page = Assignment.objects.filter(
        annotator=OuterRef("pk"), status__in=[Assignment.Status.ACTIVE, Assignment.Status.SUBMITTED]
    )
    columns |= {"late_checks": Exists(late), "open_page": Exists(open_page)}
    row = Annotator.objects.filter(pk=annotator.pk).annotate(**columns).values(*columns).get()
    return NextPageState(
        onboarding=_onboarding_due(steps, row), may_have_late_checks=row["late_checks"], has_open_page=row["open_page"]
    )


def onboarding_record(*, annotator: Annotator, step: str, version: str) -> OnboardingRecord | None:
    return OnboardingRecord.objects.filter(annotator=annotator, step=step, version=version).first()


def annotators_working_now(*, now=None) -> int:
    """Annotators holding an open page now (active and not expired, or awaiting a check).

    Counting pages counts annotators: the database allows one open page per annotator.
    """
    now = now or timezone.now()
    return Assignment.objects.filter(
        Q(status=Assignment.Status.SUBMITTED) | Q(status=Assignment.Status.ACTIVE, expires_at__gt=now)
    ).count()


def untouched_participants_holding(*, now=None) -> int:
    """Crowd participants holding a first page they have not submitted yet (one open page each)."""
    now = now or timezone.now()
    return Assignment.objects.filter(status=Assignment.Status.ACTIVE, expires_at__gt=now, is_first_page=True).count()


def annotator_reconfirmed_count(*, annotator: Annotator) -> int:
    """How many grounding checks the annotator has answered (the finish page thanks them)."""
    return Judgment.objects.filter(annotator=annotator, phase=Judgment.Phase.RECONFIRMED).count()


def annotators_with_judgment_total(annotators):
    """The annotators with ``judgment_total``: how many judgments each has written.

    A correlated count, not a JOIN + GROUP BY over every judgment: PostgreSQL evaluates it
    for the rows of the page shown only (unless the list is sorted by it).
    """
    per_annotator = (
        Judgment.objects.filter(annotator=OuterRef("pk")).order_by().values("annotator").annotate(n=Count("pk")).values("n")
    )
    return annotators.annotate(judgment_total=Coalesce(Subquery(per_annotator), 0))


def disagreements(judgments=None):
    """Initial judgments at least MORALE_DISAGREEMENT_THRESHOLD from the model's score: the
    ones that triggered a grounding check (``ReviewItem.disagrees`` is the same rule, per page)."""
    judgments = Judgment.objects.all() if judgments is None else judgments
    return judgments.filter(phase=Judgment.Phase.INITIAL, delta__gte=settings.MORALE_DISAGREEMENT_THRESHOLD)


# --- what each user may read (the REST API) ------------------------------------------------
# Researchers read every row; anyone else only rows of their own work, so someone else's
# id is a 404, never a 403 (docs/api.md).
def contexts_visible(*, user, researcher: bool):
    """Researchers: all; others: the contexts of their own assignments."""
    qs = Context.objects.all()
    if researcher:
        return qs
    return qs.filter(Exists(Assignment.objects.filter(context=OuterRef("pk"), annotator__user_id=user.pk)))


def scenarios_visible(*, user, researcher: bool):
    """Researchers: all; others: the scenarios of their own assignments and those they wrote."""
    qs = Scenario.objects.annotate(author_public_id=F("author__public_id"))
    if researcher:
        return qs
    on_own_page = AssignmentItem.objects.filter(scenario=OuterRef("pk"), assignment__annotator__user_id=user.pk)
    return qs.filter(Q(Exists(on_own_page)) | Q(author__user_id=user.pk))


def assignments_visible(*, user, researcher: bool):
    """Researchers: all; others: their own. Each with its scenario ids in page order."""
    qs = Assignment.objects.annotate(annotator_public_id=F("annotator__public_id")).prefetch_related(
        Prefetch("items", queryset=AssignmentItem.objects.order_by("position").only("assignment_id", "scenario_id"))
    )
    return qs if researcher else qs.filter(annotator__user_id=user.pk)


def judgments_visible(*, user, researcher: bool):
    """Researchers: all; others: their own."""
    qs = Judgment.objects.annotate(context_id=F("scenario__context_id"), annotator_public_id=F("annotator__public_id"))
    return qs if researcher else qs.filter(annotator__user_id=user.pk)
