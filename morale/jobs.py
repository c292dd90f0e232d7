"""One lifecycle for background jobs: dataset exports, imports and training runs.

::

    queued --claim()--> running --beat() / write() ...--> done | failed (with the reason)
      ^                    |
      +---- sweep() -------+  no heartbeat for MORALE_JOB_STALE_MINUTES: the worker was lost;
                              queued again and re-sent (rows the kind's ``resumable`` admits,
                              fewer than MORALE_JOB_MAX_ATTEMPTS claims) or failed with the reason

A job is a row of a model with the fields ``status`` ("queued", "running", the kind's
``done``, "failed", and any other final status the app uses), ``heartbeat_at``,
``claim_token``, ``attempts``, ``sent_at``, ``created_at`` and ``finished_at``. The rules:

- **claim**: one conditional ``UPDATE ... SET status='running', claim_token=<new> WHERE
  id=%s AND status='queued'``. Two workers given the same id: one UPDATE changes the row, the
  other changes nothing and its worker does nothing. A repeated or redelivered message is
  therefore harmless, and so is the sweep re-sending a job.
- **fenced writes**: every write of a running job (heartbeat, progress, outcome) is an UPDATE
  conditional on ``status='running'`` and the claim token. A worker whose job was declared
  lost (and failed, or claimed by another worker) gets ``JobLost`` and stops, never
  overwriting the outcome or the new attempt.
- **heartbeats** are throttled: at most one write per ``MORALE_JOB_HEARTBEAT_SECONDS``, from
  wherever the work loops (export chunks, import chunks, training steps, feature extraction
  through ``beat_current``).
- **staleness** is minutes of silence, never total time: a healthy run of six hours that beats
  is never stale; a killed one is found ``MORALE_JOB_STALE_MINUTES`` after its last beat.
- **sending** never raises: with the broker down the job stays queued, unsent, and the sweep
  sends it again after ``MORALE_JOB_RESEND_SECONDS``.

This module imports no app: each app declares its ``JobKind`` (model, task, policy) and calls
these functions; the periodic tasks of the apps call ``sweep``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

logger = logging.getLogger("morale.jobs")

QUEUED, RUNNING, FAILED = "queued", "running", "failed"


class JobLost(Exception):
    """This worker no longer holds the job (the sweep declared it lost, then failed it or
    queued it again): stop, write nothing more."""


def _error_field(reason: str) -> dict:
    return {"error": reason}


@dataclass(frozen=True)
class JobKind:
    """One kind of background job and its recovery policy.

    ``send(pk)`` hands a job to a worker (``task.delay``) and may raise when the broker is
    down. ``resumable``: the running rows that may be queued again when their worker is lost
    (``Q()`` all, ``None`` none: those are failed). ``failure(reason)``: the fields that record
    a failure's reason on this model.
    """

    name: str
    model: type[models.Model]
    send: Callable[[int], object]
    done: str = "done"
    resumable: Q | None = field(default_factory=Q)
    failure: Callable[[str], dict] = _error_field

    @property
    def objects(self) -> models.Manager:
        return self.model._default_manager


def stale_before(now: datetime | None = None) -> datetime:
    """Running jobs whose last heartbeat is older than this lost their worker."""
    return (now or timezone.now()) - timedelta(minutes=settings.MORALE_JOB_STALE_MINUTES)


def new_token() -> str:
    return uuid.uuid4().hex


def claimed_fields() -> dict:
    """The fields of a job created already running in this process (an inline export or
    import): claimed by its creator, beating like any claimed job."""
    return {"status": RUNNING, "claim_token": new_token(), "heartbeat_at": timezone.now(), "attempts": 1}


# --- sending -------------------------------------------------------------------------------------
def send(kind: JobKind, pk: int) -> bool:
    """Hand a queued job to a worker; never raises. True if the broker took the message."""
    try:
        kind.send(pk)
    except Exception as exc:  # noqa: BLE001 - any broker failure: the sweep sends it again
        logger.warning("could not send %s #%s (%s); the sweep sends it again", kind.name, pk, exc)
        return False
    kind.objects.filter(pk=pk, status=QUEUED).update(sent_at=timezone.now())
    return True


# --- a worker's side -------------------------------------------------------------------------
def claim(kind: JobKind, pk: int, **fields) -> models.Model | None:
    """Take a queued job (one conditional UPDATE): the job, running and held by this worker,
    or None when there is nothing to do (another worker has it, or it is finished)."""
    token = new_token()
    taken = kind.objects.filter(pk=pk, status=QUEUED).update(
        status=RUNNING, claim_token=token, heartbeat_at=timezone.now(), attempts=F("attempts") + 1, **fields
    )
    if not taken:
        return None
    job = kind.objects.get(pk=pk)
    if job.claim_token != token:  # pragma: no cover - swept and claimed again within this call
        return None
    job._job_beat = time.monotonic()
    return job


def write(kind: JobKind, job: models.Model, **fields) -> None:
    """Write ``fields`` (and a heartbeat) on a running job this worker holds, and on ``job``.
    Raises JobLost, writing nothing, when it no longer holds it."""
    fields.setdefault("heartbeat_at", timezone.now())
    held = kind.objects.filter(pk=job.pk, status=RUNNING, claim_token=job.claim_token)
    if not job.claim_token or not held.update(**fields):
        row = kind.objects.filter(pk=job.pk).values("status", "claim_token").first()
        now = "gone" if row is None else f"{row['status']}, {'claimed by another worker' if row['claim_token'] else 'unclaimed'}"
        raise JobLost(f"{kind.name} #{job.pk} is no longer held by this worker (now {now})")
    for name, value in fields.items():
        setattr(job, name, value)
    job._job_beat = time.monotonic()


def beat_due(job: models.Model) -> bool:
    """Whether MORALE_JOB_HEARTBEAT_SECONDS passed since this worker last wrote ``job``."""
    last = getattr(job, "_job_beat", None)
    return last is None or time.monotonic() - last >= settings.MORALE_JOB_HEARTBEAT_SECONDS


def beat(kind: JobKind, job: models.Model, *, force: bool = False) -> bool:
    """A heartbeat, written at most once per MORALE_JOB_HEARTBEAT_SECONDS (unless ``force``).
    True if written. Raises JobLost when the worker no longer holds the job."""
    if not force and not beat_due(job):
        return False
    write(kind, job)
    return True


def finish(kind: JobKind, job: models.Model, **fields) -> None:
    """The job succeeded (status ``kind.done``) with ``fields``. Raises JobLost if not held."""
    write(kind, job, status=kind.done, finished_at=timezone.now(), **fields)


def fail(kind: JobKind, job: models.Model, reason: str, **fields) -> bool:
    """The job failed with ``reason``. False (nothing written) when the worker no longer held it."""
    try:
        write(kind, job, status=FAILED, finished_at=timezone.now(), **kind.failure(reason), **fields)
    except JobLost:
        logger.warning("%s #%s failed (%s) after it was taken from this worker", kind.name, job.pk, reason)
        return False
    return True


# The job this thread works on, for heartbeats from code that knows nothing of jobs
# (feature extraction calls ``beat_current`` once per batch).
_current: contextvars.ContextVar[tuple[JobKind, models.Model] | None] = contextvars.ContextVar(
    "morale_current_job", default=None
)


@contextlib.contextmanager
def working_on(kind: JobKind, job: models.Model) -> Iterator[models.Model]:
    """Within this block, ``beat_current()`` beats ``job``."""
    token = _current.set((kind, job))
    try:
        yield job
    finally:
        _current.reset(token)


def beat_current() -> None:
    """A throttled heartbeat of the job this thread works on, if any (see ``working_on``)."""
    current = _current.get()
    if current is not None:
        beat(*current)


# --- the sweep -------------------------------------------------------------------------------------
def sweep(kind: JobKind, *, now: datetime | None = None) -> dict:
    """Recover jobs of ``kind`` whose worker or message was lost; idempotent.

    Running with no heartbeat for MORALE_JOB_STALE_MINUTES: queued again and re-sent if
    ``kind.resumable`` admits it and it was claimed fewer than MORALE_JOB_MAX_ATTEMPTS
    times, else failed with the reason. Queued and unsent for MORALE_JOB_RESEND_SECONDS
    (broker down), or sent longer than MORALE_JOB_STALE_MINUTES ago and still unclaimed
    (message lost): sent again. Every change is conditional on what was read, so two sweeps
    at once act once. Returns the counts ``{"requeued", "failed", "sent", "unsent"}`` (unsent:
the broker refused the message; the job stays queued for the next sweep).
    """
    now = now or timezone.now()
    cutoff = stale_before(now)
    counts = {"requeued": 0, "failed": 0, "sent": 0, "unsent": 0}
    stale = kind.objects.filter(status=RUNNING).filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))
    resumable = set()
    if kind.resumable is not None:
        resumable = set(stale.filter(kind.resumable).values_list("pk", flat=True))
    for pk, token, attempts, last in stale.values_list("pk", "claim_token", "attempts", "heartbeat_at"):
        silent = (
            f"no heartbeat since {last:%Y-%m-%d %H:%M:%S} UTC ({(now - last).total_seconds() / 60:.0f} min)"
            if last else "no heartbeat at all"
        )
        held = kind.objects.filter(pk=pk, status=RUNNING, claim_token=token)
        if pk in resumable and attempts < settings.MORALE_JOB_MAX_ATTEMPTS:
            if held.update(status=QUEUED, claim_token="", sent_at=None):
                logger.warning("%s #%s: %s: its worker was lost; queued again (%d of %d claims so far)",
                               kind.name, pk, silent, attempts, settings.MORALE_JOB_MAX_ATTEMPTS)
                counts["requeued"] += 1
                counts["sent" if send(kind, pk) else "unsent"] += 1
            continue
        tail = f" after {attempts} attempts" if pk in resumable else ""
        reason = f"{silent}: the worker was lost{tail}"
        if held.update(status=FAILED, claim_token="", finished_at=now, **kind.failure(reason)):
            logger.warning("%s #%s failed: %s", kind.name, pk, reason)
            counts["failed"] += 1
    unsent = Q(sent_at__isnull=True, created_at__lt=now - timedelta(seconds=settings.MORALE_JOB_RESEND_SECONDS))
    due = kind.objects.filter(Q(status=QUEUED) & (unsent | Q(sent_at__lt=cutoff))).exclude(pk__in=resumable)
    for pk in due.values_list("pk", flat=True):
        counts["sent" if send(kind, pk) else "unsent"] += 1
    return counts
