"""Grounding checks: after a disagreement, and later for scores that arrived late."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from .. import forms, selectors, services
from ..forms import MISSING_MESSAGES, MODALITY_HELP, SCORE_LABELS
from .common import annotator_required, assignment_or_404


def _check_form(
    request, items, *, scope, status=200, posted=None, errors=None, page_error=None, heading_context=None
):
    # seconds_spent counts from the first time each check was shown.
    services.checks_mark_shown(annotator=request.annotator, judgment_ids=[i.judgment.pk for i in items])
    rows = forms.check_rows(items, posted, errors)
    return render(
        request,
        "annotation/check.html",
        {
            "rows": rows,
            "score_labels": SCORE_LABELS,
            "modality_help": MODALITY_HELP,
            "missing": MISSING_MESSAGES,
            "page_token": request.POST.get("page_token") or uuid.uuid4(),
            "check_items": forms.check_items_signed(items, annotator=request.annotator, assignment_id=scope),
            "error": page_error or forms.errors_summary([(r["label"], r["errors"]) for r in rows]),
            "post_url": request.path,
            "context": heading_context,
            "threshold": settings.MORALE_DISAGREEMENT_THRESHOLD,
            "progress": selectors.annotator_progress(annotator=request.annotator),
        },
        status=status,
    )


def _grounding_checks(request, items, *, scope: int | None, heading_context=None, done_url: str) -> HttpResponse:
    """Show the checks (GET) with the list of them signed into the form. On POST, answer
    exactly the checks that form showed, with the model scores it showed (a score that
    arrived since is checked on a later page): every answer validated first, then all
    stored in one transaction, idempotent per page token."""
    if request.method != "POST":
        return _check_form(request, items, scope=scope, heading_context=heading_context)
    try:
        token = forms.page_token(request.POST)
        shown = forms.check_items_from_post(request.POST, annotator=request.annotator, assignment_id=scope)
    except ValidationError as exc:
        return _check_form(
            request, items, scope=scope, status=400, page_error=exc.messages[0], heading_context=heading_context
        )
    posted_items = selectors.check_items_shown(annotator=request.annotator, shown=shown, assignment_id=scope)
    if len(posted_items) != len(shown):
        return _check_form(
            request, items, scope=scope, status=400, page_error=forms.FORM_OUT_OF_DATE, heading_context=heading_context
        )
    answers, errors = forms.check_answers_from_post(request.POST, posted_items)
    if errors:
        return _check_form(
            request, posted_items, scope=scope, status=400, posted=request.POST, errors=errors,
            heading_context=heading_context,
        )
    services.judgments_reconfirm(annotator=request.annotator, answers=answers, page_token=token)
    return redirect(done_url)


@annotator_required
@require_http_methods(["GET", "POST"])
def check(request: HttpRequest, assignment_id: int) -> HttpResponse:
    assignment = assignment_or_404(request, assignment_id)
    items = [i for i in selectors.assignment_review(assignment=assignment) if i.needs_check]
    review_url = reverse("annotation:review", args=[assignment.pk])
    if not items and request.method != "POST":
        return redirect(review_url)
    return _grounding_checks(
        request, items, scope=assignment.pk, heading_context=assignment.context, done_url=review_url
    )


@annotator_required
@require_http_methods(["GET", "POST"])
def late_checks(request: HttpRequest) -> HttpResponse:
    """Checks whose model score arrived after the annotator had moved on."""
    items = selectors.late_checks_for(annotator=request.annotator)
    if not items and request.method != "POST":
        return redirect("annotation:next")
    return _grounding_checks(request, items, scope=None, done_url=reverse("annotation:next"))
