"""Writes of an annotator's status: screen out, pause, reinstate (researchers' decisions and
quality control's automatic pause). Imported by the admin, annotation.research.quality and tests.

Every change writes an ``AnnotatorScreening`` row (who, when, why) in the same
transaction; a paused or screened-out annotator's open page expires at once, so its
scenarios go back to the pool. Rules: docs/quality-control.md.
"""

from __future__ import annotations

from django.db import transaction

from ..models import Annotator, AnnotatorScreening, Assignment

_Action, _Status = AnnotatorScreening.Action, Annotator.Status

# action -> (the status it sets, the statuses it may start from); from any other status
# the change is a no-op (already done, or a stronger decision stands).
_TRANSITIONS = {
    _Action.SCREEN_OUT: (_Status.SCREENED_OUT, (_Status.ACTIVE, _Status.PAUSED)),
    _Action.PAUSE: (_Status.PAUSED, (_Status.ACTIVE,)),
    _Action.REINSTATE: (_Status.ACTIVE, (_Status.PAUSED, _Status.SCREENED_OUT)),
}


def _reasons_list(reasons) -> list[dict]:
    """Reasons as [{"code", "message"}]: quality flags as they are, free text as a "note"."""
    if reasons is None:
        return []
    if isinstance(reasons, (str, dict)):
        reasons = [reasons]
    out = []
    for reason in reasons:
        if isinstance(reason, dict):
            out.append({"code": str(reason.get("code") or "note"), "message": str(reason.get("message") or "")})
        elif str(reason).strip():
            out.append({"code": "note", "message": str(reason).strip()})
    return out


def _status_change(annotator: Annotator, *, action: str, by, reasons) -> AnnotatorScreening | None:
    """Apply ``action`` (``_TRANSITIONS``) under a row lock on the annotator; None when their
    status does not allow it. ``annotator`` is refreshed with the status either way."""
    to, allowed_from = _TRANSITIONS[action]
    reasons = _reasons_list(reasons)
    with transaction.atomic():
        locked = Annotator.objects.select_for_update().get(pk=annotator.pk)
        if locked.status not in allowed_from:
            annotator.status, annotator.status_reason = locked.status, locked.status_reason
            return None
        locked.status = to
        locked.status_reason = "; ".join(r["message"] for r in reasons if r["message"])
        locked.full_clean()
        locked.save(update_fields=["status", "status_reason"])
        screening = AnnotatorScreening(annotator=locked, action=action, reasons=reasons, decided_by=by)
        screening.full_clean()
        screening.save()
        if to != Annotator.Status.ACTIVE:
            # Their open page gives its scenarios back to the pool at once, not after its TTL.
            Assignment.objects.filter(annotator=locked, status=Assignment.Status.ACTIVE).update(
                status=Assignment.Status.EXPIRED
            )
    annotator.status, annotator.status_reason = locked.status, locked.status_reason
    return screening


def annotator_screen_out(annotator: Annotator, *, by, reasons=None) -> AnnotatorScreening | None:
    """A researcher confirms a screening: the annotator gets no more work, and exports and
    dataset figures leave their judgments out (the rows stay stored).

    ``by``: the deciding user (None: automatic). ``reasons``: quality flags, text, or a
    list of either; default the annotator's current quality flags. Returns the new
    ``AnnotatorScreening`` row, or None when the annotator was screened out already.
    """
    if reasons is None:
        reasons = (annotator.quality or {}).get("flags") or []
    return _status_change(annotator, action=_Action.SCREEN_OUT, by=by, reasons=reasons)


def annotator_pause(annotator: Annotator, *, by=None, reasons=None) -> AnnotatorScreening | None:
    """Stop giving an active annotator work until someone reinstates them; their judgments
    stay in exports. None when they were not active (paused or screened out already)."""
    return _status_change(annotator, action=_Action.PAUSE, by=by, reasons=reasons)


def annotator_reinstate(annotator: Annotator, *, by, note: str = "") -> AnnotatorScreening | None:
    """Lift a pause or a screening: active again, judgments back in exports.

    None when the annotator was active already. Canaries failed before this moment no
    longer count towards the automatic pause.
    """
    return _status_change(annotator, action=_Action.REINSTATE, by=by, reasons=note)
