"""Writes of annotators: accounts, consent, and entry from a crowd platform (no sign-up form).

Status changes (screen out, pause, reinstate) record who and why; they live with quality
control (``annotation.services.screening``), not here.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..crowd import CrowdEntryRefused, crowd_entry_check, crowd_username
from ..models import Annotator


@transaction.atomic
def annotator_create(*, username: str, password: str) -> Annotator:
    user = get_user_model().objects.create_user(username=username, password=password)
    annotator = Annotator(user=user)
    annotator.full_clean()
    annotator.save()
    return annotator


def annotator_for_user(*, user) -> Annotator:
    """The user's annotator profile, created on first use (e.g. a researcher trying the flow)."""
    return Annotator.objects.get_or_create(user=user)[0]


def annotator_record_consent(*, annotator: Annotator, version: str) -> Annotator:
    annotator.consent_version = version
    annotator.consented_at = timezone.now()
    annotator.full_clean()
    annotator.save(update_fields=["consent_version", "consented_at"])
    return annotator


def crowd_annotator(*, platform: str, participant_id: str, study_id: str | None = None) -> Annotator:
    """The annotator for a crowd participant, created on first entry. Idempotent.

    Raises CrowdEntryRefused when ``crowd.crowd_entry_check`` refuses the entry. A
    participant who was screened out or paused keeps their account (and gets no new work).
    """
    crowd_entry_check(platform=platform, participant_id=participant_id, study_id=study_id)
    existing = _crowd_annotator_find(platform, participant_id)
    if existing is None:
        existing = _crowd_annotator_create(platform, participant_id)
    return existing


def _crowd_annotator_find(platform: str, participant_id: str) -> Annotator | None:
    return (
        Annotator.objects.select_related("user")
        .filter(platform=platform, platform_participant_id=participant_id)
        .first()
    )


def _crowd_annotator_create(platform: str, participant_id: str) -> Annotator:
    try:
        with transaction.atomic():
            # No password: no login form; the entry URL logs the participant in.
            user = get_user_model().objects.create_user(username=crowd_username(platform, participant_id))
            annotator = Annotator(user=user, platform=platform, platform_participant_id=participant_id)
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
