"""What every annotator page needs: the annotator_required gate and the page lookup."""

from __future__ import annotations

import functools

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest
from django.shortcuts import redirect, render

from .. import selectors, services
from ..models import Annotator, Assignment


def annotator_required(view):
    """Logged in, consented to the current consent version, and active."""

    @login_required
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        annotator = services.annotator_for_user(user=request.user)
        if not annotator.has_consented(settings.MORALE_CONSENT_VERSION):
            return redirect("annotation:consent")
        if annotator.status != Annotator.Status.ACTIVE:
            return render(request, "annotation/not_active.html", {"annotator": annotator}, status=403)
        request.annotator = annotator
        return view(request, *args, **kwargs)

    return wrapper


def assignment_or_404(request, assignment_id: int) -> Assignment:
    try:
        return selectors.assignment_for_annotator(annotator=request.annotator, assignment_id=assignment_id)
    except Assignment.DoesNotExist:
        raise Http404("No such page of yours.") from None
