"""Grounding checks: after a disagreement, and later for scores that arrived late."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from .. import forms, selectors, services
from ..forms import MISSING_MESSAGES, MODALITY_HELP, SCORE_LABELS
from ..models import Assignment, Judgment
from .common import annotator_required
from .rating import step_response


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


def _grounding_checks(
    request, items: Callable[[], list], *, scope: int | None, heading_context=None, posted_items_for, done
) -> HttpResponse:
    """Answer exactly the checks the posted form showed, with the model scores it showed (a
    score that arrived since is checked on a later page): every answer validated first,
    then all stored in one transaction, idempotent per page token. ``items()``: the checks
    to show again on an error; ``posted_items_for(shown)``: the checks the form carried;
    ``done(posted_items, reconfirmed)``: the response once they are stored."""
    try:
        token = forms.page_token(request.POST)
        shown = forms.check_items_from_post(request.POST, annotator=request.annotator, assignment_id=scope)
    except ValidationError as exc:
        return _check_form(
            request, items(), scope=scope, status=400, page_error=exc.messages[0], heading_context=heading_context
        )
    posted_items = posted_items_for(shown)
    if len(posted_items) != len(shown):
        return _check_form(
            request, items(), scope=scope, status=400, page_error=forms.FORM_OUT_OF_DATE, heading_context=heading_context
        )
    answers, errors = forms.check_answers_from_post(request.POST, posted_items)
    if errors:
        return _check_form(
            request, posted_items, scope=scope, status=400, posted=request.POST, errors=errors,
            heading_context=heading_context,
        )
    reconfirmed = services.judgments_reconfirm(annotator=request.annotator, answers=answers, page_token=token)
    return done(posted_items, reconfirmed)


@annotator_required
@require_http_methods(["GET", "POST"])
def check(request: HttpRequest, assignment_id: int) -> HttpResponse:
    try:
        assignment, review = selectors.assignment_review_for(annotator=request.annotator, assignment_id=assignment_id)
    except Assignment.DoesNotExist:
        raise Http404("No such page of yours.") from None
    needed = [i for i in review if i.needs_check]
    if request.method != "POST":
        if not needed:
            return redirect("annotation:review", assignment_id=assignment.pk)
        return _check_form(request, needed, scope=assignment.pk, heading_context=assignment.context)

    def answered(posted_items, reconfirmed):
        # Straight to the step after the checks (what the review page would redirect to),
        # decided on the review at hand with the answers just stored.
        for item, judgment in zip(posted_items, reconfirmed, strict=True):
            Judgment.reconfirmation.related.set_cached_value(item.judgment, judgment)
        return step_response(request, assignment, judgments=[i.judgment for i in review], via_review=True)

    return _grounding_checks(
        request, lambda: needed, scope=assignment.pk, heading_context=assignment.context,
        posted_items_for=lambda shown: selectors.check_items_among(review, shown), done=answered,
    )


@annotator_required
@require_http_methods(["GET", "POST"])
def late_checks(request: HttpRequest) -> HttpResponse:
    """Checks whose model score arrived after the annotator had moved on."""
    if request.method != "POST":
        items = selectors.late_checks_for(annotator=request.annotator)
        if not items:
            return redirect("annotation:next")
        return _check_form(request, items, scope=None)
    return _grounding_checks(
        request, lambda: selectors.late_checks_for(annotator=request.annotator), scope=None,
        posted_items_for=lambda shown: selectors.check_items_shown(annotator=request.annotator, shown=shown),
        done=lambda posted_items, reconfirmed: redirect("annotation:next"),
    )
