"""Before the first page: the start redirect and the consent (versioned, stored)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from .. import services


@login_required
def start(request: HttpRequest) -> HttpResponse:
    return redirect("annotation:next")


@login_required
@require_http_methods(["GET", "POST"])
def consent(request: HttpRequest) -> HttpResponse:
    annotator = services.annotator_for_user(user=request.user)
    version = settings.MORALE_CONSENT_VERSION
    error = None
    if request.method == "POST":
        if request.POST.get("agree") == "yes":
            services.annotator_record_consent(annotator=annotator, version=version)
            return redirect("annotation:next")
        error = "To take part, please tick the box to say you have read this and agree."
    return render(
        request,
        "annotation/consent.html",
        {"version": version, "error": error, "already": annotator.has_consented(version)},
        status=400 if error else 200,
    )
