"""What the annotator pages read from a POST: ratings, grounding-check answers, the page
token, and the self-signup form. Parsing only: the rules live in the services. The time
spent on a page is measured on the server (``services.judgments``), never read from a POST.

Imported by ``annotation.views`` only. The pages are plain HTML forms (names like
``score-<scenario id>``), so these are functions over ``request.POST`` rather than Form classes.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError

from . import crowd, services
from .models import Assignment, ItemReport

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


# --- the rating page -----------------------------------------------------------------------
def rating_rows(assignment: Assignment, posted=None, reported=None) -> list[dict]:
    """One row per scenario on the page, with what was posted for it (to fill the form again)
    and, for a scenario the annotator reported (``reported``: scenario id -> ItemReport), the report."""
    rows = []
    for item in assignment.items.all():
        sid = item.scenario_id
        rows.append(
            {
                "scenario": item.scenario,
                "position": item.position + 1,
                "score": (posted or {}).get(f"score-{sid}", ""),
                "modality": (posted or {}).get(f"modality-{sid}", ""),
                "error": (posted or {}).get(f"error-{sid}"),
                "reported": (reported or {}).get(sid),
                "report_reason": (posted or {}).get(f"report-reason-{sid}", ""),
                "report_note": (posted or {}).get(f"report-note-{sid}", ""),
                "report_error": (posted or {}).get(f"report-error-{sid}"),
            }
        )
    return rows


def ratings_from_post(assignment: Assignment, posted: dict, reported=()) -> tuple[list[services.RatingInput], int]:
    """The page's ratings as typed, and how many are invalid. Each invalid one gets its
    message in ``posted["error-<scenario id>"]`` (``rating_rows`` shows it). Scenarios the
    annotator reported (ids in ``reported``) are skipped: they need no rating."""
    ratings, errors = [], 0
    for item in assignment.items.all():
        sid = item.scenario_id
        if sid in reported:
            continue
        score, modality = posted.get(f"score-{sid}"), posted.get(f"modality-{sid}")
        try:
            services.rating_check(score=score, modality=modality)
        except ValidationError as exc:
            posted[f"error-{sid}"] = exc.messages[0]
            errors += 1
        ratings.append(services.RatingInput(scenario_id=sid, score=score, modality=modality))
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


# --- the grounding check -------------------------------------------------------------------
def check_answer(post, item) -> tuple[int, str]:
    """One grounding-check answer as (score, modality); ValidationError says what is wrong."""
    jid, original = item.judgment.pk, item.judgment.score
    decision = post.get(f"decision-{jid}")
    posted_score = post.get(f"score-{jid}")
    if decision not in ("keep", "revise"):
        raise ValidationError("Please say whether you keep or revise your score.")
    if decision == "keep":
        if posted_score not in (None, "", str(original)):
            raise ValidationError(
                f"You chose to keep your score ({original}) but picked {posted_score}: "
                "choose \"Revise it to\" to change it."
            )
        posted_score = original
    return services.rating_check(score=posted_score, modality=post.get(f"modality-{jid}"))


# --- self-signup ---------------------------------------------------------------------------
class SignupForm(UserCreationForm):
    """Django's sign-up form; usernames of crowd participants ("prolific-...") are reserved."""

    def clean_username(self):
        username = super().clean_username()
        if crowd.reserved_username(username):
            raise ValidationError("Usernames starting with a platform name are reserved; please choose another.")
        return username
