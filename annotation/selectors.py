"""Reads of the annotation app: what a page shows, which step comes next, who may read what.

Views, the API and the admin read through these; the services use the slot counts. Only
``modelloop.selectors`` is read from the model loop (the score shown).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from modelloop import selectors as modelloop_selectors

from .models import Annotator, Assignment, AssignmentItem, Context, ItemReport, Judgment, Scenario


def assignment_for_annotator(*, annotator: Annotator, assignment_id: int) -> Assignment:
    """An assignment of this annotator with its context and scenarios (404 for anyone else's)."""
    return (
        Assignment.objects.select_related("context")
        .prefetch_related("items__scenario")
        .get(pk=assignment_id, annotator=annotator)
    )


@dataclass(frozen=True)
class ReviewItem:
    judgment: Judgment
    model_score: float | None  # None: no score yet (pending) or the model failed on the pair
    pending: bool  # scoring not finished
    reconfirmation: Judgment | None

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
    late = modelloop_selectors.scores_shown(scenario_ids=[j.scenario_id for j in judgments if j.model_score is None])
    reconfirmations = {
        j.revises_id: j for j in Judgment.objects.filter(revises__in=[j.pk for j in judgments])
    }
    items = []
    for j in judgments:
        if j.model_score is not None:
            score, pending = j.model_score, False
        else:
            score, pending = late.score(j.scenario_id), late.pending(j.scenario_id)
        items.append(ReviewItem(judgment=j, model_score=score, pending=pending, reconfirmation=reconfirmations.get(j.pk)))
    return items


def assignment_review(*, assignment: Assignment) -> list[ReviewItem]:
    judgments = list(
        Judgment.objects.filter(assignment=assignment, phase=Judgment.Phase.INITIAL)
        .select_related("scenario")
        .order_by("id")
    )
    return review_items(judgments)


@dataclass(frozen=True)
class NextStep:
    name: str  # "rate" | "wait" | "check" | "add" | "done"
    items: list[ReviewItem]


def assignment_next_step(*, assignment: Assignment, now=None) -> NextStep:
    """Where a page goes after rating (paper, fig. 4).

    Disagreements get grounding checks; while scores are missing the page polls for up to
    MORALE_SCORE_WAIT_SECONDS, then lets the annotator go on (the check is offered later
    in the session). With no disagreement the add-scenario prompt follows, by default only
    when every scenario agreed (MORALE_ADD_SCENARIO_WHEN).
    """
    now = now or timezone.now()
    if assignment.status in (Assignment.Status.ACTIVE, Assignment.Status.EXPIRED):
        return NextStep("rate", [])
    items = assignment_review(assignment=assignment)
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


LATE_CHECK_WINDOW = timedelta(hours=12)


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
        .select_related("scenario", "scenario__context")
        .order_by("id")
    )
    return [i for i in review_items(judgments) if i.needs_check]


@dataclass(frozen=True)
class Progress:
    pages_done: int
    judgments_done: int
    contexts_left: int


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
    """The annotator's reports of the scenarios on this page, by scenario id (those are skipped)."""
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


def annotator_progress(*, annotator: Annotator) -> Progress:
    open_for_me = open_scenarios_for(annotator).filter(context=OuterRef("pk"))
    return Progress(
        pages_done=Assignment.objects.filter(annotator=annotator, status=Assignment.Status.COMPLETED).count(),
        judgments_done=Judgment.objects.filter(annotator=annotator, phase=Judgment.Phase.INITIAL).count(),
        contexts_left=Context.objects.filter(is_active=True).filter(Exists(open_for_me)).count(),
    )


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
