"""Failure pages that work while the database does not.

Django calls ``server_error`` (``handler500``) for any exception a view let through. A
database that is restarting (PostgreSQL) or locked for too long (SQLite) is not a bug
but an outage: those get HTTP 503 with ``Retry-After`` and a page that tries again by
itself; a form that was being sent is carried on the page, so the annotator's answers
are not lost (every annotator form is idempotent: its page token makes a resend store
once). Everything else gets the plain 500 page. Neither page touches the database, the
session or the user: they render from the template alone. The API answers JSON, also for
a URL under ``/api/`` that matches nothing (``page_not_found``, ``handler404``).
"""

from __future__ import annotations

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import defaults

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
# OperationalError covers outages and programming mistakes alike ("no such table"); only
# these phrases (PostgreSQL, psycopg2, SQLite) mean "try again in a moment".
_OUTAGE_PHRASES = (
    "could not connect",
    "connection refused",
    "server closed the connection",
    "terminating connection",
    "the database system is",  # ... starting up / shutting down / in recovery mode
    "connection already closed",
    "connection to server",
    "ssl syscall",
    "database is locked",
    "cannot connect now",
)
# Fields never written back into a page: a password must not travel through HTML.
_SECRET_FIELDS = ("password",)


def is_database_outage(exc: BaseException | None) -> bool:
    if isinstance(exc, InterfaceError):
        return True
    if isinstance(exc, OperationalError):
        message = str(exc).lower()
        return any(phrase in message for phrase in _OUTAGE_PHRASES)
    return False


def _resendable_fields(request: HttpRequest) -> list[tuple[str, str]]:
    if request.method != "POST":
        return []
    try:
        items = request.POST.lists()
    except Exception:  # noqa: BLE001 - an unreadable body: nothing to carry
        return []
    return [
        (name, value)
        for name, values in items
        if not any(secret in name.lower() for secret in _SECRET_FIELDS)
        for value in values
    ]


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a 503 that retries itself for a database outage, else the 500 page."""
    exc = sys.exc_info()[1]
    api = request.path.startswith("/api/")
    if is_database_outage(exc):
        logger.error("database unavailable while serving %s %s: %s", request.method, request.path, exc)
        if api:
            response = JsonResponse(
                {"detail": "The database is restarting; retry in a few seconds."}, status=503
            )
        else:
            fields = _resendable_fields(request)
            response = HttpResponse(
                render_to_string(
                    "errors/503_database.html",
                    {
                        "fields": fields,
                        "resend": request.method == "POST",
                        "path": request.get_full_path(),
                        "retry_after": RETRY_AFTER_SECONDS,
                    },
                ),
                status=503,
            )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if api:
        return JsonResponse({"detail": "Server error: the team has been told. Please try again later."}, status=500)
    return HttpResponse(render_to_string("errors/500.html"), status=500)


def page_not_found(request: HttpRequest, exception=None) -> HttpResponse:
    """handler404: the API answers JSON for a URL that matches no route (``/api/v1/contexts/1.5/``),
    as it does for an id that does not exist; other pages get the site's 404 page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)
