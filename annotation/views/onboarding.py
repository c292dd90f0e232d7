"""Before the first page: the start redirect, the consent, the instructions and the practice
round. Consent, instructions and practice are versioned: each is shown until the annotator
has done its current version (``selectors.onboarding_next_step``, asked by ``next_page``).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from .. import forms, selectors, services
from ..forms import MISSING_MESSAGES, MODALITY_HELP, SCORE_LABELS
from ..models import OnboardingRecord
from .common import annotator_required


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
@require_http_methods(["GET", "POST"])
def instructions(request: HttpRequest) -> HttpResponse:
    """The current instructions; "Continue" records them as read. Open again any time (the
    rating page links here); once read, the page only leads back to the work."""
    current = selectors.instructions_current()
    if current is None:
        return redirect("annotation:next")
    if request.method == "POST":
        if request.POST.get("version") == current.version:
            services.instructions_mark_read(annotator=request.annotator, version=current.version)
            return redirect("annotation:next")
        # A researcher published a newer version while this one was open: show that one.
    already = selectors.onboarding_record(
        annotator=request.annotator, step=OnboardingRecord.Step.INSTRUCTIONS, version=current.version
    )
    return render(
        request,
        "annotation/instructions.html",
        {
            "instructions": current,
            "score_labels": SCORE_LABELS,
            "modality_help": MODALITY_HELP,
            "threshold": settings.MORALE_DISAGREEMENT_THRESHOLD,
            "already": already is not None,
            "practice_next": selectors.practice_current() is not None,
            "changed": request.method == "POST",
        },
        status=409 if request.method == "POST" else 200,
    )


@annotator_required
@require_http_methods(["GET", "POST"])
def practice(request: HttpRequest) -> HttpResponse:
    """The current practice round: answer every item, then see the known answers and why.
    Nothing here becomes a judgment; the answers are kept on the annotator's record."""
    practice_round = selectors.practice_current()
    if practice_round is None:
        return redirect("annotation:next")
    record = selectors.onboarding_record(
        annotator=request.annotator, step=OnboardingRecord.Step.PRACTICE, version=practice_round.version
    )
    if record is not None:
        return _practice_feedback(request, practice_round, record)
    if request.method == "GET":
        return _practice_form(request, practice_round)
    if request.POST.get("practice_round") != str(practice_round.pk):
        changed = "The practice items were changed while you answered; here are the new ones."
        return _practice_form(request, practice_round, status=409, page_error=changed)
    answers, errors = forms.practice_answers_from_post(practice_round, request.POST)
    if errors:
        return _practice_form(request, practice_round, posted=request.POST, errors=errors, status=400)
    try:
        services.practice_submit(annotator=request.annotator, practice_round_id=practice_round.pk, answers=answers)
    except ValidationError as exc:
        return _practice_form(request, practice_round, posted=request.POST, status=400, page_error=" ".join(exc.messages))
    return redirect("annotation:practice")


def _practice_form(request, practice_round, *, posted=None, errors=None, status=200, page_error=None):
    rows = forms.practice_rows(practice_round, posted, errors)
    return render(
        request,
        "annotation/practice.html",
        {
            "practice_round": practice_round,
            "rows": rows,
            "score_labels": SCORE_LABELS,
            "modality_help": MODALITY_HELP,
            "missing": MISSING_MESSAGES,
            "error": page_error or forms.errors_summary([(r["label"], r["errors"]) for r in rows]),
        },
        status=status,
    )


def _practice_feedback(request, practice_round, record):
    answers = {a["item"]: a for a in record.answers}
    scores = dict(SCORE_LABELS)
    modalities = {value: label for value, label, _, _ in MODALITY_HELP}
    rows = [
        {
            "item": item,
            "answer": answers[item.pk],
            "score_label": scores.get(answers[item.pk]["score"], ""),
            "modality_label": modalities.get(answers[item.pk]["modality"], ""),
            "expected_modality_label": modalities.get(item.modality, ""),
        }
        for item in practice_round.items.all()
        if item.pk in answers  # an item added after the annotator practised is not shown
    ]
    return render(
        request,
        "annotation/practice_feedback.html",
        {"practice_round": practice_round, "rows": rows, "right": sum(1 for r in rows if r["answer"]["score_ok"])},
    )
