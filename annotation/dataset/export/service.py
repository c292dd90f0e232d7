"""The export service: write an export now (``dataset_export_create``) or queue it for a
worker (``dataset_export_queue`` / ``_claim`` / ``_run``, ``exports_resume``), each file
recorded in a ``DatasetExport``. The format and the filters: docs/dataset-export.md.
Queued exports follow the one job lifecycle of ``morale.jobs`` (``EXPORT_JOB``).
"""

from __future__ import annotations

import logging
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from django.core.files import File
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotation.models import DatasetExport
from morale import jobs

from ..format import FORMAT, FORMATS
from .options import ExportOptions
from .records import Tally, export_context_total, high_water_marks, iter_records
from .writers import WRITERS, HashingSink

logger = logging.getLogger("annotation.exports")  # the name log filters know


def _send(export_id: int) -> None:
    from ... import tasks

    tasks.export_dataset.delay(export_id)


# A lost export (its worker died) is written again from scratch by the next worker.
EXPORT_JOB = jobs.JobKind(name="export", model=DatasetExport, send=_send, resumable=Q())


class ExportFailed(Exception):
    """An export could not be written; ``export`` is its record, marked failed."""

    def __init__(self, export: DatasetExport):
        super().__init__(f"export #{export.pk} failed: {export.error}")
        self.export = export


# --- writing one file --------------------------------------------------------------------------
@dataclass(frozen=True)
class WriteResult:
    """What ``export_write`` wrote: the file's sha256 and size, the counts, the high-water marks."""

    sha256: str
    size_bytes: int
    counts: dict
    marks: dict


def export_write(
    out, *, fmt: str, options: ExportOptions, marks: dict | None = None, progress: Callable[[int], None] | None = None
) -> WriteResult:
    """Stream the export in format ``fmt`` into the binary file ``out``; return hash and counts.

    ``progress``, if given, is called with the number of contexts read so far, about once
    per chunk and once at the end.
    """
    if fmt not in WRITERS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    sink = HashingSink(out)
    tally = Tally()
    marks = marks or high_water_marks()
    writer = WRITERS[fmt](sink, options)
    reported = 0
    for record in iter_records(options, marks=marks, tally=tally):
        writer.write(record)
        if progress is not None and tally.read["contexts"] - reported >= options.chunk_size:
            reported = tally.read["contexts"]
            progress(reported)
    writer.close()
    if progress is not None:
        progress(tally.read["contexts"])
    out.flush()
    return WriteResult(sha256=sink.sha256.hexdigest(), size_bytes=sink.size, counts=tally.as_dict(), marks=marks)


# --- the service -------------------------------------------------------------------------------
class _MovableFile(File):
    """A finished temporary file; FileSystemStorage moves it into place instead of copying."""

    def temporary_file_path(self) -> str:
        return self.file.name


def dataset_export_create(*, fmt: str, created_by=None, **filter_overrides) -> DatasetExport:
    """Write a dataset export in format ``fmt`` ("jsonl", "csv", "parquet") now, and record it.

    ``filter_overrides`` are ``ExportOptions`` fields (``source``, ``max_sd``,
    ``include_screened``, ``include_canaries``, ``include_imported``, ``split_seed``, ``test_fraction``,
    ``chunk_size``, ``context_ids``); the rest come from settings. The record is saved
    first with status ``running`` (visible in the admin while the file is written; not one
    transaction on purpose: a long transaction would hold SQLite's write lock). The file is
    written to a temporary file, hashed on the way, then moved into storage under
    ``exports/``. On any error the record is marked ``failed`` with the reason, no file is
    left in storage, and ``ExportFailed`` (carrying the record) is raised from the original
    error. Bad arguments raise ValueError / TypeError before anything is written.

    Web requests use ``dataset_export_queue`` instead: the same work in a worker.
    """
    export = _new_export(fmt, created_by, filter_overrides, status=DatasetExport.Status.RUNNING)
    _write_export(export)
    return export


def dataset_export_queue(*, fmt: str, created_by=None, **filter_overrides) -> DatasetExport:
    """Record an export as ``queued`` and hand it to a worker (task ``annotation.export_dataset``).

    Returns at once; the record shows progress (``progress_done`` / ``progress_total``
    contexts) and ends ``done`` with its file or ``failed`` with the reason. The task is
    sent after the transaction commits; if the broker is down the record stays queued and
    the periodic ``annotation.resume_jobs`` sends it again. Bad arguments raise
    ValueError / TypeError and record nothing.
    """
    export = _new_export(fmt, created_by, filter_overrides, status=DatasetExport.Status.QUEUED)
    transaction.on_commit(lambda: jobs.send(EXPORT_JOB, export.pk))
    return export


def dataset_export_claim(export_id: int) -> DatasetExport | None:
    """Take a queued export for writing (``morale.jobs.claim``: one conditional UPDATE, so two
    workers given the same id never both write it). None: nothing to do (running elsewhere,
    done, failed). A running export whose worker died is queued again by ``exports_resume``.
    """
    return jobs.claim(EXPORT_JOB, export_id, progress_done=0)


def dataset_export_run(export_id: int) -> DatasetExport | None:
    """Write a queued export (the body of task ``annotation.export_dataset``); idempotent.

    Returns the finished record, or None when there was nothing to claim. Failures are
    recorded on the export (status ``failed``, reason in ``error``) and not raised: the
    task must not be retried for a bad export.
    """
    export = dataset_export_claim(export_id)
    if export is None:
        return None
    try:
        _write_export(export)
    except ExportFailed:
        logger.exception("export #%s failed", export_id)
    except jobs.JobLost as exc:  # declared lost meanwhile; another attempt owns the record
        logger.warning("export #%s abandoned: %s", export_id, exc)
    return export


def exports_resume() -> int:
    """The sweep of exports (``morale.jobs.sweep``): a running export silent for
    ``MORALE_JOB_STALE_MINUTES`` is queued again (or failed after ``MORALE_JOB_MAX_ATTEMPTS``),
    queued ones whose message was lost are sent again. Returns how many sends it tried."""
    counts = jobs.sweep(EXPORT_JOB)
    return counts["sent"] + counts["unsent"]


def _new_export(fmt: str, created_by, filter_overrides: dict, *, status: str) -> DatasetExport:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    options = ExportOptions.from_settings(**filter_overrides)
    export = DatasetExport(
        format=fmt,
        format_version=FORMAT,
        options=_options_json(options),
        created_by=created_by,
        **(jobs.claimed_fields() if status == DatasetExport.Status.RUNNING else {"status": status}),
    )
    export.full_clean()
    export.save()
    return export


def _options_json(options: ExportOptions) -> dict:
    """The options as stored in the record (JSON: the selection as a list)."""
    data = asdict(options)
    if data["context_ids"] is not None:
        data["context_ids"] = list(data["context_ids"])
    return data


def _options_of(export: DatasetExport) -> ExportOptions:
    recorded = {k: v for k, v in export.options.items() if k in {f.name for f in fields(ExportOptions)}}
    return ExportOptions.from_settings(**recorded)


def _write_export(export: DatasetExport) -> None:
    """Write ``export``'s file from its recorded options; mark it done, or failed and raise."""
    tmp_path = stored_name = None
    try:
        options = _options_of(export)
        marks = high_water_marks()
        total = export_context_total(options, marks)
        jobs.write(EXPORT_JOB, export, progress_total=total)

        def progress(done: int) -> None:
            # Progress is cheap to show but a write per chunk is not: throttled like a heartbeat.
            export.progress_done = done
            if done == total or jobs.beat_due(export):
                jobs.write(EXPORT_JOB, export, progress_done=done)

        with tempfile.NamedTemporaryFile(prefix="morale-export-", suffix=f".{export.format}", delete=False) as tmp:
            tmp_path = tmp.name
            result = export_write(tmp, fmt=export.format, options=options, marks=marks, progress=progress)
        name = f"morale-export-{timezone.now():%Y%m%d-%H%M%S}-{export.pk}-{secrets.token_hex(8)}.{export.format}"
        with open(tmp_path, "rb") as finished:
            export.file.save(name, _MovableFile(finished, name=name), save=False)
        stored_name = export.file.name
        jobs.finish(
            EXPORT_JOB,
            export,
            file=export.file.name,
            sha256=result.sha256,
            size_bytes=result.size_bytes,
            counts=result.counts,
            options={**_options_json(options), "format": FORMAT, "high_water": result.marks},
            progress_done=export.progress_done,
        )
    except Exception as exc:
        if stored_name:
            try:
                export.file.storage.delete(stored_name)
            except Exception:  # pragma: no cover - best effort; the record says failed
                pass
        export.file.name = ""
        if isinstance(exc, jobs.JobLost):
            raise
        jobs.fail(EXPORT_JOB, export, f"{type(exc).__name__}: {exc}"[:10000], file="")
        raise ExportFailed(export) from exc
    finally:
        if tmp_path:
            Path(tmp_path).unlink(missing_ok=True)

