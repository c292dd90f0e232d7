"""The annotator's pages, one module per step: onboarding (consent, instructions,
practice), rating, reports (report and skip an item), checks, entry (crowd entry, log-in,
signup, finish); ``common`` holds the annotator gate.

Thin views: parse the form (``annotation.forms``), call one service or selector, render.
Every page works without JavaScript; frontend/static/morale/keys.js adds keyboard
shortcuts, page.js the phone layout's toggles and the on-page errors before sending.
Imported by ``annotation.urls`` and ``morale.urls``.
"""

from .checks import check, late_checks
from .entry import LoginView, crowd_entry, finish, signup
from .onboarding import consent, instructions, practice, start
from .rating import add_scenario, next_page, rate, review
from .reports import report_item

__all__ = [
    "LoginView",
    "add_scenario",
    "check",
    "consent",
    "crowd_entry",
    "finish",
    "instructions",
    "late_checks",
    "next_page",
    "practice",
    "rate",
    "report_item",
    "review",
    "signup",
    "start",
]
