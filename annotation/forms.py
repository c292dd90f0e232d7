"""What the annotator pages read from a POST: ratings, practice answers, grounding-check
answers (and the signed list of checks the page showed), page token and timing, and the
self-signup form, and the "report and skip" fields. Parsing only: the rules live in the
services. The time spent on a page is measured on the server (``services.judgments``),
never read from a POST.

Errors are per control: ``{item key: {"score" | "modality" | "decision": message}}``, shown
beside each question, with a summary naming every one (``errors_summary``).

Imported by ``annotation.views`` only. The pages are plain HTML forms (names like
``score-<scenario id>``), so these are functions over ``request.POST`` rather than Form classes.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.forms import UserCreationForm
from django.core import signing
from django.core.exceptions import ValidationError

from . import crowd, services
from .models import Assignment, ItemReport, PracticeRound

SCORE_LABELS = [
    (1, "Very unacceptable"),
    (2, "Unacceptable"),
    (3, "Neutral"),
    (4, "Acceptable"),
    (5, "Very acceptable"),
]
# The paper's definitions (appendix 11), shown as help next to each choice.
MODALITY_HELP = [
    ("text", "Text", "t", "Your decision is mainly based on the written scenario; the image provides little or no relevant moral information."),
    ("image", "Image", "i", "Your decision is mainly based on visual cues."),
    ("both", "Both", "b", "Your decision depends on how the text scenario interacts with the visual scene; removing either modality would change your judgment."),
]


def page_token(post) -> uuid.UUID:
    """The token the page was rendered with (one per form): makes a double submit harmless."""
    try:
        return uuid.UUID(post.get("page_token", ""))
    except ValueError:
        raise ValidationError("The form is missing its token; please reload the page.") from None


# --- answers, one control at a time ----------------------------------------------------------
DECISION_MISSING = "Please say whether you keep or revise your score."
# Said beside a control left empty: by the server, and by the pages' script before sending.
MISSING_MESSAGES = {"score": services.SCORE_MISSING, "modality": services.MODALITY_MISSING, "decision": DECISION_MISSING}
# How the summary at the top of a page names each control.
FIELD_NAMES = {"score": "score", "modality": "what helped you decide", "decision": "keep or revise"}


def _field_errors(**checks) -> tuple[dict, dict[str, str]]:
    """Run every check (field -> a function of nothing that returns the value or raises
    ValidationError): (the values, {field: message} of those that failed)."""
    values, errors = {}, {}
    for field, check in checks.items():
        try:
            values[field] = check()
        except ValidationError as exc:
            errors[field] = exc.messages[0]
    return values, errors


def _rating_errors(post, key) -> dict[str, str]:
    """The errors of one score + modality pair named ``score-<key>`` / ``modality-<key>``."""
    score, modality = post.get(f"score-{key}"), post.get(f"modality-{key}")
    return _field_errors(score=lambda: services.score_check(score), modality=lambda: services.modality_check(modality))[1]


def errors_summary(labelled: list[tuple[str, dict[str, str]]]) -> str | None:
    """One line naming every answer that is missing or wrong, e.g. "Please complete 3
    answers: Scenario 1 (score), Scenario 3 (score, what helped you decide). ..."
    ``labelled``: (the item's label, its errors) in page order. The pages' script builds
    the same line before sending (frontend/static/morale/page.js)."""
    parts = [f"{label} ({', '.join(FIELD_NAMES[f] for f in FIELD_NAMES if f in errors)})" for label, errors in labelled if errors]
    if not parts:
        return None
    n = sum(len(errors) for _, errors in labelled)
    return f"Please complete {n} answer{'s' if n != 1 else ''}: {', '.join(parts)}. Each is marked below, beside its question."


# --- the rating page -----------------------------------------------------------------------
def rating_rows(assignment: Assignment, posted=None, errors=None, reported=None) -> list[dict]:
    """One row per scenario on the page, with what was posted for it (to fill the form again),
    the error of each of its controls and, for a scenario the annotator reported
    (``reported``: scenario id -> ItemReport), the report."""
    posted, errors, reported = posted or {}, errors or {}, reported or {}
    rows = []
    for item in assignment.items.all():
        sid = item.scenario_id
        rows.append(
            {
                "scenario": item.scenario,
                "key": str(sid),
                "label": f"Scenario {item.position + 1}",
                "position": item.position + 1,
                "score": posted.get(f"score-{sid}", ""),
                "modality": posted.get(f"modality-{sid}", ""),
                "errors": errors.get(sid, {}),
                "reported": reported.get(sid),
                "report_reason": posted.get(f"report-reason-{sid}", ""),
                "report_note": posted.get(f"report-note-{sid}", ""),
                "report_error": posted.get(f"report-error-{sid}"),
            }
        )
    return rows


def ratings_from_post(assignment: Assignment, posted, reported=()) -> tuple[list[services.RatingInput], dict[int, dict[str, str]]]:
    """The page's ratings as typed, and the errors of each scenario's controls (by scenario id).
    Scenarios the annotator reported (ids in ``reported``) are skipped: they need no rating."""
    ratings, errors = [], {}
    for item in assignment.items.all():
        sid = item.scenario_id
        if sid in reported:
            continue
        if field_errors := _rating_errors(posted, sid):
            errors[sid] = field_errors
        ratings.append(services.RatingInput(scenario_id=sid, score=posted.get(f"score-{sid}"), modality=posted.get(f"modality-{sid}")))
    return ratings, errors


# --- reporting an item -----------------------------------------------------------------------
REPORT_REASONS = ItemReport.Reason.choices


def report_from_post(post) -> tuple[int, dict]:
    """The "Report and skip" button's scenario id and the report fields typed for it
    (``reason``, ``note``, ``page_comment``); ValidationError when the button carried no id."""
    try:
        sid = int(post.get("report", ""))
    except ValueError:
        raise ValidationError("The report is missing its scenario; please reload the page.") from None
    fields = {
        "reason": post.get(f"report-reason-{sid}"),
        "note": post.get(f"report-note-{sid}", ""),
        "page_comment": post.get("page_comment", ""),
    }
    return sid, fields


# --- the practice page ---------------------------------------------------------------------
def practice_rows(practice_round: PracticeRound, posted=None, errors=None) -> list[dict]:
    """Like ``rating_rows``, for the practice items (fields ``score-p<item id>``, ``modality-p<item id>``)."""
    posted, errors = posted or {}, errors or {}
    return [
        {
            "item": item,
            "key": f"p{item.pk}",
            "label": f"Practice {n}",
            "position": n,
            "score": posted.get(f"score-p{item.pk}", ""),
            "modality": posted.get(f"modality-p{item.pk}", ""),
            "errors": errors.get(item.pk, {}),
        }
        for n, item in enumerate(practice_round.items.all(), start=1)
    ]


def practice_answers_from_post(practice_round: PracticeRound, posted) -> tuple[list[services.PracticeAnswer], dict]:
    answers, errors = [], {}
    for item in practice_round.items.all():
        key = f"p{item.pk}"
        if field_errors := _rating_errors(posted, key):
            errors[item.pk] = field_errors
        answers.append(
            services.PracticeAnswer(item_id=item.pk, score=posted.get(f"score-{key}"), modality=posted.get(f"modality-{key}"))
        )
    return answers, errors


# --- the grounding check -------------------------------------------------------------------
_CHECK_ITEMS_SALT = "annotation.check-items"
FORM_OUT_OF_DATE = "This form is out of date or damaged; please reload the page."


def check_items_signed(items, *, annotator, assignment_id: int | None) -> str:
    """The checks a page shows, as it shows them, signed (SECRET_KEY): the POST stores
    answers to exactly these, with the model scores they showed, whatever arrived since."""
    shown = [[i.judgment.pk, i.model_score, i.model_version_id] for i in items]
    return signing.dumps({"annotator": annotator.pk, "page": assignment_id, "shown": shown}, salt=_CHECK_ITEMS_SALT)


def check_items_from_post(post, *, annotator, assignment_id: int | None) -> list[tuple[int, float | None, int | None]]:
    """What ``check_items_signed`` put in the form; ValidationError when it is missing,
    tampered with, or from another annotator's or another page's form."""
    try:
        carried = signing.loads(post.get("check_items", ""), salt=_CHECK_ITEMS_SALT)
    except signing.BadSignature:
        raise ValidationError(FORM_OUT_OF_DATE) from None
    if carried.get("annotator") != annotator.pk or carried.get("page") != assignment_id:
        raise ValidationError(FORM_OUT_OF_DATE)
    return [(int(jid), score, version_id) for jid, score, version_id in carried["shown"]]


def _decision_check(post, item):
    """"keep" gives the original score, "revise" the chosen one; ValidationError otherwise."""
    jid, original = item.judgment.pk, item.judgment.score
    decision, posted_score = post.get(f"decision-{jid}"), post.get(f"score-{jid}")
    if decision not in ("keep", "revise"):
        raise ValidationError(DECISION_MISSING)
    if decision == "keep":
        if posted_score not in (None, "", str(original)):
            raise ValidationError(
                f"You chose to keep your score ({original}) but picked {posted_score}: "
                "choose \"Revise it to\" to change it."
            )
        return original
    return services.score_check(posted_score)


def check_answers_from_post(post, items) -> tuple[list[services.CheckAnswer], dict[int, dict[str, str]]]:
    """The answers of a grounding-check page (by initial judgment id) and each control's error."""
    answers, errors = [], {}
    for item in items:
        jid = item.judgment.pk
        values, field_errors = _field_errors(
            modality=lambda: services.modality_check(post.get(f"modality-{jid}")),
            decision=lambda: _decision_check(post, item),
        )
        if field_errors:
            errors[jid] = field_errors
            continue
        answers.append(
            services.CheckAnswer(
                judgment_id=jid,
                score=values["decision"],
                modality=values["modality"],
                model_score=item.model_score,
                model_version_id=item.model_version_id,
            )
        )
    return answers, errors


def check_rows(items, posted=None, errors=None) -> list[dict]:
    """One row per check: the modality pre-filled with the first answer, the decision and
    the revised score as posted, and each control's error."""
    posted, errors = posted or {}, errors or {}
    rows = []
    for n, item in enumerate(items, start=1):
        j = item.judgment
        rows.append(
            {
                "item": item,
                "judgment": j,
                "key": str(j.pk),
                "label": f"Scenario {n}",
                "position": n,
                "modality": posted.get(f"modality-{j.pk}", j.modality),
                "decision": posted.get(f"decision-{j.pk}", ""),
                "revised_score": posted.get(f"score-{j.pk}") or str(j.score),
                "errors": errors.get(j.pk, {}),
            }
        )
    return rows


# --- self-signup ---------------------------------------------------------------------------
class SignupForm(UserCreationForm):
    """Django's sign-up form; usernames of crowd participants ("prolific-...") are reserved."""

    def clean_username(self):
        username = super().clean_username()
        if crowd.reserved_username(username):
            raise ValidationError("Usernames starting with a platform name are reserved; please choose another.")
        return username
