"""Rating a page: the next page, the rating form, the step after it, the add-scenario prompt."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from .. import forms, selectors, services
from ..forms import MISSING_MESSAGES, MODALITY_HELP, SCORE_LABELS
from ..models import Assignment
from .common import annotator_required, assignment_or_404


@annotator_required
def next_page(request: HttpRequest) -> HttpResponse:
    """Where the annotator goes next: instructions or practice (a version not done yet),
    checks whose score came late, then their open page or a new one."""
    state = selectors.next_page_state(annotator=request.annotator)
    if state.onboarding is not None:
        return redirect(f"annotation:{state.onboarding}")
    if state.may_have_late_checks and selectors.late_checks_for(annotator=request.annotator):
        return redirect("annotation:late_checks")
    try:
        assignment = services.assignment_get_or_create(
            annotator=request.annotator, has_open_page=state.has_open_page
        )
    except services.AnnotatorNotActive:
        return render(request, "annotation/not_active.html", {"annotator": request.annotator}, status=403)
    except services.StudyFull:
        # 503 + Retry-After: a busy study, not an error of the participant's.
        response = render(request, "annotation/study_full.html", status=503)
        response["Retry-After"] = "60"
        return response
    if assignment is None:
        return redirect("annotation:finish")
    if assignment.status == Assignment.Status.SUBMITTED:
        return redirect("annotation:review", assignment_id=assignment.pk)
    return redirect("annotation:rate", assignment_id=assignment.pk)


def _render_rating(request, assignment, *, posted=None, errors=None, status=200, expired=False, gone=False, error=None):
    services.assignment_mark_rendered(assignment=assignment)  # seconds_spent counts from the first render
    progress = selectors.annotator_progress(annotator=request.annotator)
    reported = selectors.reports_on_page(annotator=request.annotator, assignment=assignment)
    rows = forms.rating_rows(assignment, posted, errors, reported)
    return render(
        request,
        "annotation/rate.html",
        {
            "assignment": assignment,
            "context": assignment.context,
            "rows": rows,
            "score_labels": SCORE_LABELS,
            "modality_help": MODALITY_HELP,
            "report_reasons": forms.REPORT_REASONS,
            "page_comment": (posted or {}).get("page_comment", ""),
            "page_token": (posted or {}).get("page_token") or uuid.uuid4(),
            "progress": progress,
            "expired": expired,
            "gone": gone,
            "error": error or forms.errors_summary([(r["label"], r["errors"]) for r in rows]),
            "missing": MISSING_MESSAGES,
        },
        status=status,
    )


@annotator_required
@require_http_methods(["GET", "POST"])
def rate(request: HttpRequest, assignment_id: int) -> HttpResponse:
    assignment = assignment_or_404(request, assignment_id)
    if assignment.status in (Assignment.Status.SUBMITTED, Assignment.Status.COMPLETED) and request.method == "GET":
        return redirect("annotation:review", assignment_id=assignment.pk)
    if request.method == "GET":
        if assignment.status == Assignment.Status.EXPIRED:
            return _render_rating(request, assignment, status=409, expired=True)
        return _render_rating(request, assignment)

    posted = request.POST.dict()
    reported = selectors.reports_on_page(annotator=request.annotator, assignment=assignment)
    ratings, errors = forms.ratings_from_post(assignment, posted, reported)
    if errors:
        return _render_rating(request, assignment, posted=posted, errors=errors, status=400)
    try:
        judgments = services.assignment_submit_ratings(
            annotator=request.annotator,
            assignment_id=assignment.pk,
            ratings=ratings,
            page_token=forms.page_token(request.POST),
            renew_expired=posted.get("renew") == "1",
            comment=posted.get("page_comment", ""),
        )
    except services.AssignmentExpired:
        return _render_rating(request, assignment, posted=posted, status=409, expired=True)
    except services.AssignmentNoLongerAvailable:
        return _render_rating(request, assignment, posted=posted, status=409, gone=True)
    except ValidationError as exc:
        return _render_rating(request, assignment, posted=posted, status=400, error=" ".join(exc.messages))
    # Straight to the step after rating (what the review page would redirect to), one
    # round trip fewer; the page's fresh judgments are the review's input.
    submitted = judgments[0].assignment if judgments else assignment
    return step_response(request, submitted, judgments=judgments, via_review=True)


@annotator_required
def review(request: HttpRequest, assignment_id: int) -> HttpResponse:
    """Decide the step after rating; while model scores are missing, poll (meta refresh)."""
    return step_response(request, assignment_or_404(request, assignment_id))


def step_response(request, assignment, *, judgments=None, via_review=False) -> HttpResponse:
    """The step after rating as a response: a redirect to the rating form, the checks or the
    add-scenario prompt, the waiting page, or (done) the page completed and on to the next.

    ``judgments``: the page's initial judgments when the caller has them (the submit just
    stored them). ``via_review``: the caller is not the review page, so the waiting page
    is reached by a redirect to it (its refresh polls that URL)."""
    step = selectors.assignment_next_step(assignment=assignment, judgments=judgments)
    if step.name == "rate":
        return redirect("annotation:rate", assignment_id=assignment.pk)
    if step.name == "check":
        return redirect("annotation:check", assignment_id=assignment.pk)
    if step.name == "add":
        return redirect("annotation:add", assignment_id=assignment.pk)
    if step.name == "wait":
        if via_review:
            return redirect("annotation:review", assignment_id=assignment.pk)
        return render(
            request,
            "annotation/waiting.html",
            {
                "assignment": assignment,
                "context": assignment.context,
                "progress": selectors.annotator_progress(annotator=request.annotator),
            },
        )
    services.assignment_complete(annotator=request.annotator, assignment_id=assignment.pk)
    return redirect("annotation:next")


_ADDED_MESSAGE = {
    "pool": "Thank you: your scenario joins the pool for other annotators.",
    "review": "Thank you: a researcher will look at your scenario before other annotators rate it.",
}


@annotator_required
@require_http_methods(["GET", "POST"])
def add_scenario(request: HttpRequest, assignment_id: int) -> HttpResponse:
    assignment = assignment_or_404(request, assignment_id)
    if assignment.status != Assignment.Status.SUBMITTED:
        return redirect("annotation:review", assignment_id=assignment.pk)
    error, text = None, ""
    if request.method == "POST":
        if request.POST.get("action") == "skip":
            services.assignment_complete(annotator=request.annotator, assignment_id=assignment.pk)
            return redirect("annotation:next")
        text = request.POST.get("text", "")
        try:
            services.scenario_add_by_annotator(annotator=request.annotator, assignment_id=assignment.pk, text=text)
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            messages.success(request, _ADDED_MESSAGE[settings.MORALE_WRITTEN_SCENARIOS])
            return redirect("annotation:next")
    return render(
        request,
        "annotation/add.html",
        {
            "assignment": assignment,
            "context": assignment.context,
            "error": error,
            "text": text,
            "max_chars": settings.MORALE_SCENARIO_MAX_CHARS,
            "progress": selectors.annotator_progress(annotator=request.annotator),
        },
        status=400 if error else 200,
    )
