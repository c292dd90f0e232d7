"""The researchers' pages: the dashboard (/research/) and the quality list (/research/quality/).
Thin views over ``dashboard``, ``quality`` and ``items``; routed by ``urls``.

Staff or members of the "researcher" group only: anonymous visitors go to the login page,
anyone else gets 403.
"""

from __future__ import annotations

import functools

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse

from modelloop.models import ModelVersion
from morale.roles import is_researcher
from .dashboard import dashboard_bundle, dashboard_charts, key_figures
from .items import flagged_items
from .probes import HEADLINE, latest_probes, probe_detail
from .quality import flagged_annotators


def researcher_required(view):
    """Logged in (else the login page), and a researcher (``roles.is_researcher``: the same
    rule as the admin and the API; else 403)."""

    @login_required
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not is_researcher(request.user):
            raise PermissionDenied("Researchers only.")
        return view(request, *args, **kwargs)

    return wrapper


@researcher_required
def dashboard(request: HttpRequest) -> HttpResponse:
    bundle = dashboard_bundle(use_cache=request.GET.get("refresh") != "1")
    return render(
        request,
        "research/dashboard.html",
        {"bundle": bundle, "figures": key_figures(bundle), "charts": dashboard_charts(bundle)},
    )


def _admin_url(name: str, pk: int) -> str | None:
    try:
        return reverse(name, args=[pk])
    except NoReverseMatch:
        return None


@researcher_required
def quality_list(request: HttpRequest) -> HttpResponse:
    annotators = flagged_annotators()
    for row in annotators:
        row["admin_url"] = _admin_url("admin:annotation_annotator_change", row["id"])
    items = flagged_items(limit=200)
    for row in items["items"]:
        row["admin_url"] = _admin_url("admin:annotation_scenario_change", row["scenario_id"])
    return render(request, "research/quality.html", {"annotators": annotators, "items": items})


# --- robustness probes (issue 14) ---------------------------------------------------------------
@researcher_required
def probes(request: HttpRequest) -> HttpResponse:
    """Every model version with the headline figures of its latest probe."""
    return render(request, "research/probes.html", {"rows": latest_probes(), "headline": HEADLINE})


@researcher_required
def probe_version(request: HttpRequest, version_id: int) -> HttpResponse:
    """One version's latest probe: its figures beside its reference's, the severity curves."""
    version = get_object_or_404(ModelVersion, pk=version_id)
    return render(request, "research/probe_version.html", {"version": version, **probe_detail(version)})


@researcher_required
def probe_severity_svg(request: HttpRequest, version_id: int) -> HttpResponse:
    """The severity curves of one version's latest probe as a standalone SVG (the admin shows it)."""
    detail = probe_detail(get_object_or_404(ModelVersion, pk=version_id))
    if detail["chart"] is None:
        raise Http404("This version has no probe yet.")
    return render(request, "research/probe_severity.svg", {"chart": detail["chart"]}, content_type="image/svg+xml")
