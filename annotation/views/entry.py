"""Coming in and leaving: crowd-platform entry, log-in (and its lockout page), self-signup, the finish page."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.views.decorators.http import require_http_methods

from morale import client_ip
from morale.roles import is_researcher

from .. import auth, crowd, forms, selectors, services
from .common import annotator_required


@annotator_required
def finish(request: HttpRequest) -> HttpResponse:
    """Thanks, progress, and the completion code once the study's completion rule is met."""
    annotator = request.annotator
    progress = selectors.annotator_progress(annotator=annotator)
    code = crowd.completion_code_shown(annotator)
    earned = code is not None and crowd.completion_earned(
        pages_done=progress.pages_done,
        nothing_left=not progress.contexts_left and services.assignment_open_for(annotator=annotator) is None,
    )
    return render(
        request,
        "annotation/finish.html",
        {
            "progress": progress,
            "completion_code": code if earned else None,
            "completion_url": crowd.completion_url_for(annotator) if earned else None,
            "code_pending": code is not None and not earned,
            "pages_needed": settings.MORALE_COMPLETION_MIN_PAGES,
            "reconfirmed": selectors.annotator_reconfirmed_count(annotator=annotator),
        },
    )

# --- entry without a password: crowd platforms and self-signup ------------------------------


def _entry_refused(request, reason: str, *, status: int) -> HttpResponse:
    return render(request, "annotation/entry_refused.html", {"reason": reason}, status=status)


@require_http_methods(["GET", "POST"])
def crowd_entry(request: HttpRequest) -> HttpResponse:
    """``/enter/?PROLIFIC_PID=...`` or ``?workerId=...``: log the participant in, no sign-up.

    A GET never replaces someone else's session: when another account is signed in, it
    shows a confirmation page whose POST (with its CSRF token) does the switch.
    """
    query = request.POST if request.method == "POST" else request.GET
    entry = crowd.entry_from_query(query)
    if entry is None:
        return _entry_refused(
            request, "This link is missing its participant id. Please open the study from Prolific or MTurk.", status=400
        )
    if entry.is_mturk_preview:
        # MTurk's preview before a worker accepts the HIT: show what the task is, create nothing.
        return render(request, "annotation/entry_preview.html")
    check = {
        "platform": entry.platform,
        "participant_id": entry.participant_id,
        "study_id": entry.study_id,
        "session_id": entry.session_id,
    }
    someone_else = request.user.is_authenticated and request.user.get_username() != crowd.crowd_username(
        entry.platform, entry.participant_id
    )
    if someone_else and request.method == "GET":
        try:
            crowd.crowd_entry_check(**check)  # a link that cannot work says so before asking
        except crowd.CrowdEntryRefused as exc:
            return _entry_refused(request, str(exc), status=403)
        return render(request, "annotation/entry_confirm.html", {"params": crowd.entry_params(query)})
    try:
        annotator = services.crowd_annotator(
            **check, address_group=client_ip.address_group(client_ip.client_address(request))
        )
    except crowd.CrowdEntryRateLimited as exc:
        response = _entry_refused(request, str(exc), status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    except crowd.CrowdEntryRefused as exc:
        return _entry_refused(request, str(exc), status=403)
    if request.user.is_authenticated and request.user.pk != annotator.user_id:
        logout(request)  # confirmed over POST: a shared browser never continues someone else's session
    if not request.user.is_authenticated:
        login(request, annotator.user, backend=auth.PATH)
    return redirect("annotation:start")


def login_locked_out(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """django-axes' lockout page (``AXES_LOCKOUT_CALLABLE``), for the site's and the admin's
    log-in: says why and for how long, HTTP 429 with Retry-After."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    response = render(
        request, "registration/locked_out.html", {"minutes": max(1, round(seconds / 60))}, status=429
    )
    response["Retry-After"] = str(seconds)
    return response


class LoginView(auth_views.LoginView):
    """Django's login page; links to the sign-up page when self-signup is on. Researchers
    land on their dashboard (``/research/``), annotators on their work; a ``?next=`` wins."""

    template_name = "registration/login.html"

    def get_default_redirect_url(self):
        if is_researcher(self.request.user):
            return resolve_url("annotation:dashboard")
        return super().get_default_redirect_url()

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "self_signup": settings.MORALE_SELF_SIGNUP}


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """Self-signup for annotator accounts, only when MORALE_SELF_SIGNUP is on."""
    if not settings.MORALE_SELF_SIGNUP:
        raise Http404("Sign-up is closed: accounts are created by the research team.")
    form = forms.SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        annotator = services.annotator_create(
            username=form.cleaned_data["username"], password=form.cleaned_data["password1"]
        )
        login(request, annotator.user, backend=auth.PATH)
        return redirect("annotation:start")
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)
