"""Coming in and leaving: crowd-platform entry, log-in, self-signup, the finish page."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.views.decorators.http import require_http_methods

from morale.roles import is_researcher

from .. import crowd, forms, selectors, services
from .common import annotator_required


@annotator_required
def finish(request: HttpRequest) -> HttpResponse:
    progress = selectors.annotator_progress(annotator=request.annotator)
    return render(
        request,
        "annotation/finish.html",
        {
            "progress": progress,
            "completion_code": crowd.completion_code_shown(request.annotator),
            "completion_url": crowd.completion_url_for(request.annotator),
            "reconfirmed": selectors.annotator_reconfirmed_count(annotator=request.annotator),
        },
    )

# --- entry without a password: crowd platforms and self-signup ------------------------------


@require_http_methods(["GET"])
def crowd_entry(request: HttpRequest) -> HttpResponse:
    """``/enter/?PROLIFIC_PID=...`` or ``?workerId=...``: log the participant in, no sign-up."""
    named = crowd.platform_from_query(request.GET)
    if named is None:
        return render(
            request, "annotation/entry_refused.html",
            {"reason": "This link is missing its participant id. Please open the study from Prolific or MTurk."},
            status=400,
        )
    platform, participant_id = named
    if platform == "mturk" and request.GET.get("assignmentId") == crowd.MTURK_PREVIEW_ASSIGNMENT:
        # MTurk's preview before a worker accepts the HIT: show what the task is, create nothing.
        return render(request, "annotation/entry_preview.html")
    try:
        annotator = services.crowd_annotator(
            platform=platform, participant_id=participant_id, study_id=request.GET.get("STUDY_ID")
        )
    except crowd.CrowdEntryRefused as exc:
        return render(request, "annotation/entry_refused.html", {"reason": str(exc)}, status=403)
    if request.user.is_authenticated and request.user.pk != annotator.user_id:
        logout(request)  # a shared browser: never continue someone else's session
    if not request.user.is_authenticated:
        login(request, annotator.user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect("annotation:start")


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
        login(request, annotator.user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("annotation:start")
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)
