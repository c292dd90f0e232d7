"""The annotator's pages: consent, rating, grounding check, add scenario, finish.

Thin views: parse the form, call one service or selector, render. Every page works
without JavaScript; frontend/static/morale/keys.js only adds keyboard shortcuts.
"""

from __future__ import annotations

import functools
import time
import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from . import crowd, forms, selectors, services
from .forms import MODALITY_HELP, SCORE_LABELS
from .models import Annotator, Assignment


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


def _assignment_or_404(request, assignment_id: int) -> Assignment:
    try:
        return selectors.assignment_for_annotator(annotator=request.annotator, assignment_id=assignment_id)
    except Assignment.DoesNotExist:
        raise Http404("No such page of yours.") from None


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


@annotator_required
def next_page(request: HttpRequest) -> HttpResponse:
    if selectors.late_checks_for(annotator=request.annotator):
        return redirect("annotation:late_checks")
    try:
        assignment = services.assignment_get_or_create(annotator=request.annotator)
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


def _render_rating(request, assignment, *, posted=None, status=200, expired=False, gone=False, error=None):
    progress = selectors.annotator_progress(annotator=request.annotator)
    return render(
        request,
        "annotation/rate.html",
        {
            "assignment": assignment,
            "context": assignment.context,
            "rows": forms.rating_rows(assignment, posted),
            "score_labels": SCORE_LABELS,
            "modality_help": MODALITY_HELP,
            "page_token": (posted or {}).get("page_token") or uuid.uuid4(),
            "rendered_at": (posted or {}).get("rendered_at") or f"{time.time():.3f}",
            "progress": progress,
            "expired": expired,
            "gone": gone,
            "error": error,
        },
        status=status,
    )


@annotator_required
@require_http_methods(["GET", "POST"])
def rate(request: HttpRequest, assignment_id: int) -> HttpResponse:
    assignment = _assignment_or_404(request, assignment_id)
    if assignment.status in (Assignment.Status.SUBMITTED, Assignment.Status.COMPLETED) and request.method == "GET":
        return redirect("annotation:review", assignment_id=assignment.pk)
    if request.method == "GET":
        if assignment.status == Assignment.Status.EXPIRED:
            return _render_rating(request, assignment, status=409, expired=True)
        return _render_rating(request, assignment)

    posted = request.POST.dict()
    ratings, errors = forms.ratings_from_post(assignment, posted)
    if errors:
        return _render_rating(
            request, assignment, posted=posted, status=400, error="Some answers are missing; they are marked below."
        )
    n = max(1, len(ratings))
    seconds = forms.seconds_since(request.POST)
    try:
        services.assignment_submit_ratings(
            annotator=request.annotator,
            assignment_id=assignment.pk,
            ratings=ratings,
            page_token=forms.page_token(request.POST),
            seconds_spent=seconds / n if seconds is not None else None,
            renew_expired=posted.get("renew") == "1",
        )
    except services.AssignmentExpired:
        return _render_rating(request, assignment, posted=posted, status=409, expired=True)
    except services.AssignmentNoLongerAvailable:
        return _render_rating(request, assignment, posted=posted, status=409, gone=True)
    except ValidationError as exc:
        return _render_rating(request, assignment, posted=posted, status=400, error=" ".join(exc.messages))
    return redirect("annotation:review", assignment_id=assignment.pk)


@annotator_required
def review(request: HttpRequest, assignment_id: int) -> HttpResponse:
    """Decide the step after rating; while model scores are missing, poll (meta refresh)."""
    assignment = _assignment_or_404(request, assignment_id)
    step = selectors.assignment_next_step(assignment=assignment)
    if step.name == "rate":
        return redirect("annotation:rate", assignment_id=assignment.pk)
    if step.name == "check":
        return redirect("annotation:check", assignment_id=assignment.pk)
    if step.name == "add":
        return redirect("annotation:add", assignment_id=assignment.pk)
    if step.name == "wait":
        return render(request, "annotation/waiting.html", {"assignment": assignment, "context": assignment.context})
    services.assignment_complete(annotator=request.annotator, assignment_id=assignment.pk)
    return redirect("annotation:next")


def _check_form(request, items, *, status=200, errors=None, page_error=None, heading_context=None):
    return render(
        request,
        "annotation/check.html",
        {
            "items": items,
            "score_labels": SCORE_LABELS,
            "modality_help": MODALITY_HELP,
            "page_token": request.POST.get("page_token") or uuid.uuid4(),
            "rendered_at": request.POST.get("rendered_at") or f"{time.time():.3f}",
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
    seconds = forms.seconds_since(request.POST)
    for jid, score, modality in answers:
        services.judgment_reconfirm(
            annotator=request.annotator,
            judgment_id=jid,
            score=score,
            modality=modality,
            page_token=token,
            seconds_spent=seconds / len(answers) if seconds is not None else None,
        )
    return redirect(done_url)


@annotator_required
@require_http_methods(["GET", "POST"])
def check(request: HttpRequest, assignment_id: int) -> HttpResponse:
    assignment = _assignment_or_404(request, assignment_id)
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


@annotator_required
@require_http_methods(["GET", "POST"])
def add_scenario(request: HttpRequest, assignment_id: int) -> HttpResponse:
    assignment = _assignment_or_404(request, assignment_id)
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
            messages.success(request, "Thank you: your scenario joins the pool for other annotators.")
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
        },
        status=400 if error else 200,
    )


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
    """Django's login page; links to the sign-up page when self-signup is on."""

    template_name = "registration/login.html"

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
