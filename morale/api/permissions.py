"""Who may call what: ``IsResearcher``, for the API views of every app.

Who is a researcher is decided in one place, ``morale.roles.is_researcher`` (staff
users in the group ``researcher``, and superusers); it remembers its answer on the
request's user, so the group query runs at most once per request.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from morale.roles import is_researcher


class IsResearcher(BasePermission):
    """Researchers only (``morale.roles``); everyone else gets 403."""

    message = "Only researchers may do this."

    def has_permission(self, request, view) -> bool:
        return is_researcher(request.user)
