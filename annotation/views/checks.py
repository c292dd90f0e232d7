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
from ..forms import MODALITY_HELP, SCORE_LABELS
from .common import annotator_required, assignment_or_404


def _check_form(request, items, *, status=200, errors=None, page_error=None, heading_context=None):
    # seconds_spent counts from the first time each check was shown.
    services.checks_mark_shown(annotator=request.annotator, judgment_ids=[i.judgment.pk for i in items])
    return render(
        request,
        "annotation/check.html",
        {
            "items": items,
            "score_labels": SCORE_LABELS,
            "modality_help": MODALITY_HELP,
            "page_token": request.POST.get("page_token") or uuid.uuid4(),
            "posted": request.POST,
            "errors": errors or {},
            "page_error": page_error,
            "post_url": request.path,
            "context": heading_context,
            "threshold": settings.MORALE_DISAGREEMENT_THRESHOLD,
        },
        status=status,
    )


def _grounding_checks(request, items, *, heading_context=None, done_url: str) -> HttpResponse:
    """Show the checks; on POST validate every answer first, then store each as a
    reconfirmed judgment (idempotent per check, so a double submit stores one)."""
    if request.method != "POST":
        return _check_form(request, items, heading_context=heading_context)
    try:
        token = forms.page_token(request.POST)
    except ValidationError as exc:
        return _check_form(request, items, status=400, page_error=exc.messages[0], heading_context=heading_context)
    errors, answers = {}, []
    for item in items:
        try:
            answers.append((item.judgment.pk, *forms.check_answer(request.POST, item)))
        except ValidationError as exc:
            errors[item.judgment.pk] = exc.messages[0]
    if errors:
        return _check_form(request, items, status=400, errors=errors, heading_context=heading_context)
    for jid, score, modality in answers:
        services.judgment_reconfirm(
            annotator=request.annotator,
            judgment_id=jid,
            score=score,
            modality=modality,
            page_token=token,
            checks_on_page=len(answers),
        )
    return redirect(done_url)


@annotator_required
@require_http_methods(["GET", "POST"])
def check(request: HttpRequest, assignment_id: int) -> HttpResponse:
    assignment = assignment_or_404(request, assignment_id)
    items = [i for i in selectors.assignment_review(assignment=assignment) if i.needs_check]
    review_url = reverse("annotation:review", args=[assignment.pk])
    if not items:
        return redirect(review_url)
    return _grounding_checks(request, items, heading_context=assignment.context, done_url=review_url)


@annotator_required
@require_http_methods(["GET", "POST"])
def late_checks(request: HttpRequest) -> HttpResponse:
    """Checks whose model score arrived after the annotator had moved on."""
    items = selectors.late_checks_for(annotator=request.annotator)
    if not items:
        return redirect("annotation:next")
    return _grounding_checks(request, items, done_url=reverse("annotation:next"))
