"""Crowd platforms (Prolific, MTurk): the entry URL's rules and the completion codes. No writes.

A study on Prolific or MTurk sends each participant to ``/enter/`` with their platform id
in the query string (``?PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=...`` or
``?workerId=...&assignmentId=...&hitId=...``). ``crowd_entry_check`` says whether such a
URL may start a session; ``services.crowd_annotator`` then finds or creates the annotator
for that id, so coming back (a new tab, a new device) continues the same work, and the
participant never sees a sign-up form. The finish page shows a completion code
(``completion_code_shown``) to paste back into the platform.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from django.conf import settings

from .models import Annotator

# Query-string names of the participant id on each platform.
PARTICIPANT_PARAMS = {"prolific": "PROLIFIC_PID", "mturk": "workerId"}
# Prolific ids are 24 hex characters; MTurk worker ids are upper-case letters and digits.
# Both are checked loosely (letters, digits, "_" and "-", at most 64): the platform is the
# authority, but a participant id becomes part of a username, so nothing else gets in.
_PARTICIPANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# MTurk shows the task in a preview frame with this assignment id before a worker accepts it.
MTURK_PREVIEW_ASSIGNMENT = "ASSIGNMENT_ID_NOT_AVAILABLE"


class CrowdEntryRefused(Exception):
    """The entry URL cannot start a session; the message is shown to the participant."""


def platform_from_query(query) -> tuple[str, str] | None:
    """(platform, participant id) named by an entry URL's query, or None if it names none."""
    for platform, param in PARTICIPANT_PARAMS.items():
        value = query.get(param)
        if value is not None:
            return platform, value.strip()
    return None


def crowd_entry_check(*, platform: str, participant_id: str, study_id: str | None = None) -> None:
    """Raise CrowdEntryRefused unless this entry may start a session.

    Refused when the platform's entry is off (``MORALE_CROWD_PLATFORMS``), the id is
    malformed, or the Prolific study is not ours (``MORALE_PROLIFIC_STUDY_ID``).
    """
    if platform not in PARTICIPANT_PARAMS:
        raise CrowdEntryRefused(f"Unknown platform {platform!r}.")
    if platform not in settings.MORALE_CROWD_PLATFORMS:
        raise CrowdEntryRefused("This study does not take participants from that platform.")
    if not _PARTICIPANT_ID.match(participant_id or ""):
        raise CrowdEntryRefused(
            "The link is missing a valid participant id. Please open the study again from the platform."
        )
    expected_study = settings.MORALE_PROLIFIC_STUDY_ID
    if platform == "prolific" and expected_study and study_id != expected_study:
        raise CrowdEntryRefused("This link belongs to another study. Please open the study again from Prolific.")


def crowd_username(platform: str, participant_id: str) -> str:
    """The username of a crowd participant's account: "<platform>-<id>" (reserved, see below)."""
    return f"{platform}-{participant_id}"


def reserved_username(username: str) -> bool:
    """Usernames of the form "<platform>-<id>" belong to crowd participants (``crowd_username``)."""
    return username.lower().startswith(tuple(f"{p}-" for p in PARTICIPANT_PARAMS))


def completion_code_for(annotator: Annotator) -> str:
    """The code the finish page shows, to be pasted back into the crowd platform.

    ``MORALE_COMPLETION_CODE`` when set (Prolific gives one code per study); otherwise a
    per-annotator code, an HMAC of the annotator's public id under SECRET_KEY, so it
    cannot be guessed from the outside and the admin can show who earned which code.
    """
    if settings.MORALE_COMPLETION_CODE:
        return settings.MORALE_COMPLETION_CODE
    digest = hmac.new(settings.SECRET_KEY.encode(), f"completion:{annotator.public_id}".encode(), hashlib.sha256)
    return base64.b32encode(digest.digest()[:10]).decode()[:12]


def completion_url_for(annotator: Annotator) -> str | None:
    """Where a Prolific participant confirms completion (None for other platforms)."""
    if annotator.platform == Annotator.Platform.PROLIFIC:
        return f"https://app.prolific.com/submissions/complete?cc={completion_code_for(annotator)}"
    return None


def completion_code_shown(annotator: Annotator) -> str | None:
    """The code on the finish page: always for crowd participants, for local accounts only
    when the study sets ``MORALE_COMPLETION_CODE``."""
    if annotator.platform != Annotator.Platform.LOCAL or settings.MORALE_COMPLETION_CODE:
        return completion_code_for(annotator)
    return None
