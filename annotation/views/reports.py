"""Reporting an item on the rating page: "Report and skip" posts the whole rating form here.

The report is stored and the page is shown again with everything typed so far, the reported
scenario skipped; Submit then accepts the page without it. Works without JavaScript.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from .. import forms, services
from ..models import Assignment, Scenario
from .common import annotator_required, assignment_or_404
from .rating import _render_rating


@annotator_required
@require_POST
def report_item(request: HttpRequest, assignment_id: int) -> HttpResponse:
    assignment = assignment_or_404(request, assignment_id)
    posted = request.POST.dict()
    try:
        scenario_id, fields = forms.report_from_post(request.POST)
    except ValidationError as exc:
        return _render_rating(request, assignment, posted=posted, status=400, error=" ".join(exc.messages))
    try:
        services.item_report(
            annotator=request.annotator, assignment_id=assignment.pk, scenario_id=scenario_id, **fields
        )
    except Scenario.DoesNotExist:
        raise Http404("That scenario is not on this page.") from None
    except ValidationError as exc:
        posted[f"report-error-{scenario_id}"] = " ".join(exc.messages)
        return _render_rating(
            request, assignment, posted=posted, status=400, error="The report is not complete; see below."
        )
    assignment = assignment_or_404(request, assignment_id)  # the report may have finished the page
    if assignment.status == Assignment.Status.COMPLETED:
        messages.success(request, "Thank you for the report. Every scenario on that page is reported: here is the next image.")
        return redirect("annotation:next")
    if assignment.status == Assignment.Status.SUBMITTED:
        messages.success(request, "Thank you for the report.")
        return redirect("annotation:review", assignment_id=assignment.pk)
    messages.success(request, "Thank you for the report. That scenario is skipped: rate the others and submit.")
    return _render_rating(request, assignment, posted=posted, expired=assignment.status == Assignment.Status.EXPIRED)
