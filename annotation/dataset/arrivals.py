"""How many usable judgments arrived since a moment: what the retrain trigger
(``training.trigger``) counts before it queues a run on a fresh export.

Counted by the export's settings: first answers (a reconfirmation adds no new pair),
canary scenarios left out unless MORALE_EXPORT_INCLUDE_CANARIES, screened-out annotators
left out unless MORALE_EXPORT_INCLUDE_SCREENED. Imported ratings do not "arrive": an import
is a researcher's act, who starts a run when they want one.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from ..models import Annotator, Judgment


def judgments_arrived_since(since: datetime | None) -> int:
    """Usable judgments created after `since` (all of them for None)."""
    rows = Judgment.objects.filter(phase=Judgment.Phase.INITIAL)
    if not settings.MORALE_EXPORT_INCLUDE_CANARIES:
        rows = rows.filter(scenario__is_canary=False)
    if not settings.MORALE_EXPORT_INCLUDE_SCREENED:
        rows = rows.exclude(annotator__status=Annotator.Status.SCREENED_OUT)
    if since is not None:
        rows = rows.filter(created_at__gt=since)
    return rows.count()
