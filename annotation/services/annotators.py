"""Writes of annotators: accounts, consent, and entry from a crowd platform (no sign-up form).

Status changes (screen out, pause, reinstate) record who and why; they live with quality
control (``annotation.services.screening``), not here.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ..crowd import (
    CrowdEntryRefused,
    crowd_entry_check,
    crowd_entry_rate_check,
    crowd_username,
    entry_address_key,
    session_matches,
)
from ..models import Annotator


@transaction.atomic
def annotator_create(*, username: str, password: str) -> Annotator:
    user = get_user_model().objects.create_user(username=username, password=password)
    annotator = Annotator(user=user)
    annotator.full_clean()
    annotator.save()
    return annotator


def annotator_for_user(*, user) -> Annotator:
    """The user's annotator profile, created on first use (e.g. a researcher trying the flow).

    No query when the user was read with it (``annotation.auth``'s backend does that)."""
    try:
        return user.annotator
    except Annotator.DoesNotExist:
        return Annotator.objects.get_or_create(user=user)[0]


def annotator_record_consent(*, annotator: Annotator, version: str) -> Annotator:
    annotator.consent_version = version
    annotator.consented_at = timezone.now()
    annotator.full_clean()
    annotator.save(update_fields=["consent_version", "consented_at"])
    return annotator


def crowd_annotator(
    *,
    platform: str,
    participant_id: str,
    study_id: str | None = None,
    session_id: str | None = None,
    address_group: str = "",
    now=None,
) -> Annotator:
    """The annotator for a crowd participant, created on first entry. Idempotent.

    Raises CrowdEntryRefused when ``crowd.crowd_entry_check`` refuses the entry, when the
    participant exists and the entry does not carry the platform session id stored at
    their first entry, or when the participant would be new and the rate limits are
    reached (CrowdEntryRateLimited; ``address_group`` is ``morale.client_ip.address_group``
    of the client). A participant who exists already is never rate-limited. A participant
    who was screened out or paused keeps their account (and gets no new work).
    """
    now = now or timezone.now()
    crowd_entry_check(platform=platform, participant_id=participant_id, study_id=study_id, session_id=session_id)
    annotator = _crowd_annotator_find(platform, participant_id)
    if annotator is None:
        annotator = _crowd_annotator_create(
            platform, participant_id, session_id=session_id, entry_address=entry_address_key(address_group), now=now
        )
    return _crowd_session_bind(annotator, session_id)


_SESSION_MISMATCH = (
    "This participant id has already started the study in another session. Please open the study "
    "again from the platform; if this keeps happening, contact the research team."
)


def _crowd_session_bind(annotator: Annotator, session_id: str | None) -> Annotator:
    """Check the entry's session id against the stored one; store it if none is yet.

    A participant whose first entry carried no session id is bound to the first one that
    arrives (one conditional UPDATE, so two different ones arriving together bind one).
    """
    if not annotator.platform_session_id and session_id:
        bound = Annotator.objects.filter(pk=annotator.pk, platform_session_id="").update(
            platform_session_id=session_id
        )
        if bound:
            annotator.platform_session_id = session_id
        else:
            annotator.refresh_from_db(fields=["platform_session_id"])
    if not session_matches(stored=annotator.platform_session_id, given=session_id):
        raise CrowdEntryRefused(_SESSION_MISMATCH)
    return annotator


def _crowd_annotator_find(platform: str, participant_id: str) -> Annotator | None:
    return (
        Annotator.objects.select_related("user")
        .filter(platform=platform, platform_participant_id=participant_id)
        .first()
    )


# Serialises participant creation on PostgreSQL, so the rate limits' count and the insert
# are one step (SQLite's IMMEDIATE transactions already admit one writer at a time).
_PG_CREATION_LOCK = 0x4D4F52414C4543  # "MORALEC"


def _crowd_annotator_create(platform: str, participant_id: str, *, session_id, entry_address, now) -> Annotator:
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PG_CREATION_LOCK])
            found = _crowd_annotator_find(platform, participant_id)
            if found is not None:  # the same participant in another tab, created while we waited
                return found
            crowd_entry_rate_check(entry_address=entry_address, now=now)
            # No password: no login form; the entry URL logs the participant in.
            user = get_user_model().objects.create_user(username=crowd_username(platform, participant_id))
            annotator = Annotator(
                user=user,
                platform=platform,
                platform_participant_id=participant_id,
                platform_session_id=session_id or "",
                entry_address=entry_address,
            )
            annotator.full_clean(exclude=["user"])
            annotator.save()
            return annotator
    except IntegrityError:
        # The same participant in two tabs at once: the other request created it first.
        found = _crowd_annotator_find(platform, participant_id)
        if found is None:  # the username is taken by an account that is not this participant's
            raise CrowdEntryRefused(
                "An account with this participant id exists outside the platform. Please contact the research team."
            ) from None
        return found
