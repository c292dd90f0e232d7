"""Writes of what annotators tell the researchers: item reports, page comments, and the
researchers' keep-or-retire decision on reported scenarios.

A reported scenario is skipped on the reporter's page (the page submits without it) and
never shown to them again. Reports from ``MORALE_REPORTS_TO_HOLD`` annotators take it out
of the pool (``Scenario.review_status = "reported"``) until a researcher keeps it (back to
the pool) or retires it; either closes its open reports. Judgments are never touched.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ..models import Annotator, Assignment, ItemReport, PageComment, Scenario

NOTE_MAX_CHARS = 1000  # report notes and page comments


def report_text_clean(text, *, what: str) -> str:
    """A note or comment as typed, stripped; ValidationError when it is too long or not text."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ValidationError(f"The {what} must be text.", code="text_type")
    cleaned = text.strip()
    if len(cleaned) > NOTE_MAX_CHARS:
        raise ValidationError(
            f"Please keep the {what} under {NOTE_MAX_CHARS} characters (it has {len(cleaned)}).", code="text_too_long"
        )
    return cleaned


def report_check(*, reason, note) -> tuple[str, str]:
    """Validate a report as typed; return (reason, note) or raise ValidationError."""
    if reason not in ItemReport.Reason.values:
        raise ValidationError("Please choose what is wrong with this item.", code="reason_missing")
    note = report_text_clean(note, what="note")
    if reason == ItemReport.Reason.OTHER and not note:
        raise ValidationError('Please say in a few words what is wrong ("other").', code="note_missing")
    return reason, note


def page_comment_save(*, annotator: Annotator, assignment: Assignment, text) -> PageComment | None:
    """Store the page's comment (one per page; a new text replaces the old one). An empty
    text stores nothing and keeps a comment made before.

    Call holding SELECT FOR UPDATE on the assignment (``item_report`` and
    ``assignment_submit_ratings`` do), so two writers never make two comments.
    """
    text = report_text_clean(text, what="comment")
    if not text:
        return None
    comment = PageComment.objects.filter(assignment=assignment).first() or PageComment(
        annotator=annotator, assignment=assignment
    )
    if comment.text == text:
        return comment
    comment.text = text
    comment.full_clean(exclude=["annotator", "assignment"], validate_unique=False)
    comment.save()
    return comment


def item_report(
    *,
    annotator: Annotator,
    assignment_id: int,
    scenario_id: int,
    reason,
    note="",
    page_comment="",
    now=None,
) -> ItemReport:
    """Report one scenario of the annotator's page; it is skipped there from now on.

    Idempotent: a second report of the same scenario returns the first. Also stores the
    page's comment as typed so far. When every scenario of an open page is reported, the
    page is done (completed, no judgments). Raises Assignment.DoesNotExist for someone
    else's page, Scenario.DoesNotExist for a scenario not on it, ValidationError for a
    missing reason or note.
    """
    now = now or timezone.now()
    reason, note = report_check(reason=reason, note=note)
    with transaction.atomic():
        # The page first, then the scenario: the order assignment_submit_ratings locks them in.
        assignment = Assignment.objects.select_for_update().get(pk=assignment_id, annotator=annotator)
        on_page = set(assignment.items.values_list("scenario_id", flat=True))
        if scenario_id not in on_page:
            raise Scenario.DoesNotExist("That scenario is not on this page.")
        report = ItemReport.objects.filter(annotator=annotator, scenario_id=scenario_id).first()
        if report is None:
            scenario = Scenario.objects.select_for_update().get(pk=scenario_id)
            report = ItemReport(
                annotator=annotator, scenario=scenario, assignment=assignment, reason=reason, note=note
            )
            report.full_clean(exclude=["annotator", "scenario", "assignment"], validate_unique=False)
            report.save()
            _hold_when_reported(scenario)
        page_comment_save(annotator=annotator, assignment=assignment, text=page_comment)
        reported = set(
            ItemReport.objects.filter(annotator=annotator, scenario_id__in=on_page).values_list("scenario_id", flat=True)
        )
        if assignment.status in (Assignment.Status.ACTIVE, Assignment.Status.EXPIRED) and reported == on_page:
            assignment.status = Assignment.Status.COMPLETED
            assignment.submitted_at = assignment.completed_at = now
            assignment.save(update_fields=["status", "submitted_at", "completed_at"])
    return report


def _hold_when_reported(scenario: Scenario) -> None:
    """Take the scenario out of the pool once enough annotators have open reports on it.

    Call holding SELECT FOR UPDATE on the scenario (``item_report`` does).
    """
    threshold = settings.MORALE_REPORTS_TO_HOLD
    if threshold <= 0 or scenario.review_status != Scenario.Review.ACCEPTED:
        return
    # One report per annotator (a UNIQUE constraint): counting rows counts annotators.
    if ItemReport.objects.filter(scenario=scenario, decision=ItemReport.Decision.OPEN).count() >= threshold:
        scenario.review_status = Scenario.Review.REPORTED
        scenario.save(update_fields=["review_status"])


# --- the researchers' decision (admin) -------------------------------------------------------
def _reports_decide(*, scenario_ids, by, decision: str, now) -> list[int]:
    """Close the open reports of these scenarios; return the ids of the scenarios that had any."""
    ids = list(scenario_ids)
    open_reports = ItemReport.objects.filter(scenario_id__in=ids, decision=ItemReport.Decision.OPEN)
    decided = sorted(set(open_reports.values_list("scenario_id", flat=True)))
    open_reports.update(decision=decision, decided_by=by, decided_at=now)
    return decided


@transaction.atomic
def reported_scenarios_keep(*, scenario_ids, by, now=None) -> int:
    """Keep reported scenarios: their open reports are closed ("kept") and the ones held by
    reports go back to the pool. Returns how many scenarios had open reports or were held."""
    now = now or timezone.now()
    ids = list(scenario_ids)
    decided = _reports_decide(scenario_ids=ids, by=by, decision=ItemReport.Decision.KEPT, now=now)
    held = Scenario.objects.filter(pk__in=ids, review_status=Scenario.Review.REPORTED)
    released = set(held.values_list("pk", flat=True))
    held.update(review_status=Scenario.Review.ACCEPTED, reviewed_by=by, reviewed_at=now)
    return len(set(decided) | released)


@transaction.atomic
def reported_scenarios_retire(*, scenario_ids, by, now=None) -> int:
    """Retire reported scenarios (no new page shows them; their judgments stay and are
    exported) and close their open reports ("retired"). A held one stops being held, so
    "bring back" on the scenario list returns it to the pool. Returns how many were retired."""
    now = now or timezone.now()
    ids = list(scenario_ids)
    _reports_decide(scenario_ids=ids, by=by, decision=ItemReport.Decision.RETIRED, now=now)
    Scenario.objects.filter(pk__in=ids, review_status=Scenario.Review.REPORTED).update(
        review_status=Scenario.Review.ACCEPTED, reviewed_by=by, reviewed_at=now
    )
    return Scenario.objects.filter(pk__in=ids, is_retired=False).update(is_retired=True)
