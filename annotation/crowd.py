"""Crowd platforms (Prolific, MTurk): entry without sign-up, completion codes, session cap.

A study on Prolific or MTurk sends each participant to ``/enter/`` with their platform id
in the query string (``?PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=...`` or
``?workerId=...&assignmentId=...&hitId=...``). ``crowd_annotator`` finds or creates the
annotator for that id, so coming back (a new tab, a new device) continues the same work,
and the participant never sees a sign-up form. The finish page shows a completion code
(``completion_code_for``) to paste back into the platform.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

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


def crowd_annotator(*, platform: str, participant_id: str, study_id: str | None = None) -> Annotator:
    """The annotator for a crowd participant, created on first entry. Idempotent.

    Raises CrowdEntryRefused when the platform's entry is off (``MORALE_CROWD_PLATFORMS``),
    the id is malformed, the Prolific study is not ours (``MORALE_PROLIFIC_STUDY_ID``), or
    the participant was screened out or paused (they keep their account; no new work).
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

    existing = Annotator.objects.select_related("user").filter(
        platform=platform, platform_participant_id=participant_id
    ).first()
    if existing is None:
        existing = _create_crowd_annotator(platform, participant_id)
    return existing


def _create_crowd_annotator(platform: str, participant_id: str) -> Annotator:
    username = f"{platform}-{participant_id}"
    try:
        with transaction.atomic():
            user = get_user_model().objects.create_user(username=username)  # no password: no login form
            annotator = Annotator(user=user, platform=platform, platform_participant_id=participant_id)
            annotator.full_clean(exclude=["user"])
            annotator.save()
            return annotator
    except IntegrityError:
        # The same participant in two tabs at once: the other request created it first.
        found = Annotator.objects.select_related("user").filter(
            platform=platform, platform_participant_id=participant_id
        ).first()
        if found is None:  # the username is taken by an account that is not this participant's
            raise CrowdEntryRefused(
                "An account with this participant id exists outside the platform. Please contact the research team."
            ) from None
        return found


def reserved_username(username: str) -> bool:
    """Usernames of the form "<platform>-<id>" belong to crowd participants (see above)."""
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
