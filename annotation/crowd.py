"""Crowd platforms (Prolific, MTurk): the entry URL's rules, its rate limits and the
completion rule and codes. Reads only; the writes are in ``services.crowd_annotator``.

A study on Prolific or MTurk sends each participant to ``/enter/`` with their platform id
in the query string (``?PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=...`` or
``?workerId=...&assignmentId=...&hitId=...``). ``entry_from_query`` reads it,
``crowd_entry_check`` says whether such a URL may start a session; ``services.crowd_annotator``
then finds or creates the annotator for that id, so coming back (a new tab, a new device)
continues the same work, and the participant never sees a sign-up form. The platform's
session id (``SESSION_ID``, ``assignmentId``) is stored at the first entry and must come
back with every later one. Creating participants is rate-limited per client address and
per study (``crowd_entry_rate_check``). The finish page shows a completion code
(``completion_code_shown``) to paste back into the platform once ``completion_earned``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db.models import Count, Min
from django.utils.crypto import salted_hmac

from morale.text import text_check

from .models import Annotator

# Query-string names of the participant id, and of the platform's session id, on each platform.
PARTICIPANT_PARAMS = {"prolific": "PROLIFIC_PID", "mturk": "workerId"}
SESSION_PARAMS = {"prolific": "SESSION_ID", "mturk": "assignmentId"}
# Every query parameter an entry URL may carry; the confirmation page passes these on (and no other).
ENTRY_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "workerId", "assignmentId", "hitId", "turkSubmitTo")
# Prolific ids are 24 hex characters; MTurk worker ids are upper-case letters and digits.
# Both are checked loosely (letters, digits, "_" and "-", at most 64): the platform is the
# authority, but a participant id becomes part of a username, so nothing else gets in.
# Session ids (Prolific's 24 hex, MTurk's ~30 letters and digits) follow the same rule.
_PARTICIPANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# MTurk shows the task in a preview frame with this assignment id before a worker accepts it.
MTURK_PREVIEW_ASSIGNMENT = "ASSIGNMENT_ID_NOT_AVAILABLE"


class CrowdEntryRefused(Exception):
    """The entry URL cannot start a session; the message is shown to the participant."""


class CrowdEntryRateLimited(CrowdEntryRefused):
    """Too many participants were created lately; ``retry_after`` says in how many seconds to try again."""

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class CrowdEntry:
    """What an entry URL says: who, from which platform, for which study and platform session."""

    platform: str
    participant_id: str
    study_id: str | None = None
    session_id: str | None = None

    @property
    def is_mturk_preview(self) -> bool:
        return self.platform == "mturk" and self.session_id == MTURK_PREVIEW_ASSIGNMENT


def entry_from_query(query) -> CrowdEntry | None:
    """The entry an entry URL's query (or the confirmation form's POST) names, or None if it names none."""
    for platform, param in PARTICIPANT_PARAMS.items():
        value = query.get(param)
        if value is not None:
            session = query.get(SESSION_PARAMS[platform])
            return CrowdEntry(
                platform=platform,
                participant_id=value.strip(),
                study_id=query.get("STUDY_ID"),
                session_id=session.strip() if session is not None else None,
            )
    return None


def entry_params(query) -> dict[str, str]:
    """The entry URL's own parameters, to carry through the confirmation form."""
    return {name: query[name] for name in ENTRY_PARAMS if name in query}


def crowd_entry_check(
    *, platform: str, participant_id: str, study_id: str | None = None, session_id: str | None = None
) -> None:
    """Raise CrowdEntryRefused unless this entry may start a session.

    Refused when the platform's entry is off (``MORALE_CROWD_PLATFORMS``), the participant
    or session id is malformed, or the Prolific study is not ours (``MORALE_PROLIFIC_STUDY_ID``).
    """
    if platform not in PARTICIPANT_PARAMS:
        raise CrowdEntryRefused(f"Unknown platform {platform!r}.")
    if platform not in settings.MORALE_CROWD_PLATFORMS:
        raise CrowdEntryRefused("This study does not take participants from that platform.")
    try:
        text_check(participant_id or "", field="The participant id in the link")
    except ValidationError as exc:
        raise CrowdEntryRefused(f"{exc.messages[0]} Please open the study again from the platform.") from None
    if not _PARTICIPANT_ID.fullmatch(participant_id or ""):
        raise CrowdEntryRefused(
            "The link is missing a valid participant id. Please open the study again from the platform."
        )
    if session_id is not None and not _PARTICIPANT_ID.fullmatch(session_id):
        raise CrowdEntryRefused("The link's session id is not valid. Please open the study again from the platform.")
    expected_study = settings.MORALE_PROLIFIC_STUDY_ID
    if platform == "prolific" and expected_study and study_id != expected_study:
        raise CrowdEntryRefused("This link belongs to another study. Please open the study again from Prolific.")


def session_matches(*, stored: str, given: str | None) -> bool:
    """Whether an entry's session id is the one stored at the participant's first entry
    (nothing stored: any). Compared in constant time: the session id is a credential."""
    if not stored:
        return True
    return given is not None and hmac.compare_digest(stored.encode(), given.encode())


# --- rate limits on creating participants -----------------------------------------------------
@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(text: str, *, setting: str) -> Rate | None:
    """ "10/h", "100/10m", "5/day" -> Rate; "" or a count of 0 -> None (no limit)."""
    if not text.strip():
        return None
    match = _RATE.match(text)
    if match is None:
        raise ImproperlyConfigured(f'{setting}={text!r}: expected "N/period", e.g. "10/h" or "100/10m".')
    count, multiple, unit = int(match[1]), int(match[2] or 1), match[3][0].lower()
    if count == 0:
        return None
    return Rate(count=count, seconds=max(1, multiple) * _UNIT_SECONDS[unit])


def entry_address_key(group: str) -> str:
    """What ``Annotator.entry_address`` stores: a keyed hash of the client's address group
    (``morale.client_ip.address_group``), so creations can be counted per address while
    the address itself is never stored."""
    return salted_hmac("morale.crowd.entry_address", group).hexdigest()[:32]


def _over(rate: Rate | None, participants, *, now) -> int | None:
    """Seconds until the oldest creation in the window leaves it, if the window is full; else None."""
    if rate is None:
        return None
    recent = participants.filter(created_at__gt=now - timedelta(seconds=rate.seconds)).aggregate(
        n=Count("pk"), oldest=Min("created_at")
    )
    if recent["n"] < rate.count:
        return None
    return max(1, math.ceil(rate.seconds - (now - recent["oldest"]).total_seconds()))


def crowd_entry_rate_check(*, entry_address: str, now) -> None:
    """Raise CrowdEntryRateLimited when a new participant may not be created now.

    Counts the participants created in the last window from the same client address
    (``MORALE_CROWD_NEW_PER_ADDRESS``) and in the whole study (``MORALE_CROWD_NEW_PER_STUDY``).
    Exact only when the caller serialises creations (``services.crowd_annotator`` does).
    """
    crowd = Annotator.objects.filter(platform__in=[p for p in Annotator.Platform.values if p != "local"])
    per_address = parse_rate(settings.MORALE_CROWD_NEW_PER_ADDRESS, setting="MORALE_CROWD_NEW_PER_ADDRESS")
    wait = _over(per_address, crowd.filter(entry_address=entry_address), now=now)
    if wait is not None:
        raise CrowdEntryRateLimited(
            f"Many new participants have joined from your network in a short time. "
            f"Please try again in {_minutes(wait)}.",
            retry_after=wait,
        )
    per_study = parse_rate(settings.MORALE_CROWD_NEW_PER_STUDY, setting="MORALE_CROWD_NEW_PER_STUDY")
    wait = _over(per_study, crowd, now=now)
    if wait is not None:
        raise CrowdEntryRateLimited(
            f"Many people are joining the study right now. Please try again in {_minutes(wait)}.",
            retry_after=wait,
        )


def _minutes(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


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


def completion_earned(*, pages_done: int, nothing_left: bool) -> bool:
    """The researcher's completion rule: at least ``MORALE_COMPLETION_MIN_PAGES`` completed
    pages, or nothing left for the annotator to rate (no open page, no context with a free
    scenario for them). Until then the finish page shows no code."""
    return pages_done >= settings.MORALE_COMPLETION_MIN_PAGES or nothing_left


def completion_code_shown(annotator: Annotator) -> str | None:
    """The code the finish page shows once ``completion_earned``: always for crowd
    participants, for local accounts only when the study sets ``MORALE_COMPLETION_CODE``."""
    if annotator.platform != Annotator.Platform.LOCAL or settings.MORALE_COMPLETION_CODE:
        return completion_code_for(annotator)
    return None
