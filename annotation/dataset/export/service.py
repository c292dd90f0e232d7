"""The export service: write an export now (``dataset_export_create``) or queue it for a
worker (``dataset_export_queue`` / ``_claim`` / ``_run``, ``exports_resume``), each file
recorded in a ``DatasetExport``. The format and the filters: docs/dataset-export.md.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotation.models import DatasetExport

from ..format import FORMAT, FORMATS
from .options import ExportOptions
from .records import Tally, export_context_total, high_water_marks, iter_records
from .writers import WRITERS, HashingSink

logger = logging.getLogger("annotation.exports")  # the name log filters know


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
    from ... import tasks

    export = _new_export(fmt, created_by, filter_overrides, status=DatasetExport.Status.QUEUED)
    transaction.on_commit(lambda: tasks.send_or_leave_queued(tasks.export_dataset, export.pk))
    return export


def _stale_before():
    return timezone.now() - timedelta(minutes=settings.MORALE_EXPORT_STALE_MINUTES)


def dataset_export_claim(export_id: int) -> DatasetExport | None:
    """Take an export for writing: a queued one, or a running one whose worker died (no
    heartbeat for ``MORALE_EXPORT_STALE_MINUTES``). One conditional UPDATE, so two workers
    given the same id never both write it. None: nothing to do (done, failed, or alive).
    """
    now = timezone.now()
    claimable = Q(status=DatasetExport.Status.QUEUED) | Q(
        status=DatasetExport.Status.RUNNING, heartbeat_at__lt=_stale_before()
    )
    taken = DatasetExport.objects.filter(claimable, pk=export_id).update(
        status=DatasetExport.Status.RUNNING, heartbeat_at=now, progress_done=0
    )
    return DatasetExport.objects.get(pk=export_id) if taken else None


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
    return export


def exports_resume() -> int:
    """Re-send queued exports older than a minute and running ones whose worker died."""
    from ... import tasks

    cutoff = timezone.now() - timedelta(minutes=1)
    ids = list(
        DatasetExport.objects.filter(
            Q(status=DatasetExport.Status.QUEUED, created_at__lt=cutoff)
            | Q(status=DatasetExport.Status.RUNNING, heartbeat_at__lt=_stale_before())
        ).values_list("pk", flat=True)
    )
    for export_id in ids:
        tasks.send_or_leave_queued(tasks.export_dataset, export_id)
    return len(ids)


def _new_export(fmt: str, created_by, filter_overrides: dict, *, status: str) -> DatasetExport:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    options = ExportOptions.from_settings(**filter_overrides)
    export = DatasetExport(
        format=fmt,
        format_version=FORMAT,
        options=_options_json(options),
        created_by=created_by,
        status=status,
        heartbeat_at=timezone.now() if status == DatasetExport.Status.RUNNING else None,
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
        DatasetExport.objects.filter(pk=export.pk).update(progress_total=total, heartbeat_at=timezone.now())
        export.progress_total = total

        def progress(done: int) -> None:
            export.progress_done = done
            DatasetExport.objects.filter(pk=export.pk).update(progress_done=done, heartbeat_at=timezone.now())

        with tempfile.NamedTemporaryFile(prefix="morale-export-", suffix=f".{export.format}", delete=False) as tmp:
            tmp_path = tmp.name
            result = export_write(tmp, fmt=export.format, options=options, marks=marks, progress=progress)
        name = f"morale-export-{timezone.now():%Y%m%d-%H%M%S}-{export.pk}-{secrets.token_hex(8)}.{export.format}"
        with open(tmp_path, "rb") as finished:
            export.file.save(name, _MovableFile(finished, name=name), save=False)
        stored_name = export.file.name
        export.sha256 = result.sha256
        export.size_bytes = result.size_bytes
        export.counts = result.counts
        export.options = {**_options_json(options), "format": FORMAT, "high_water": result.marks}
        export.status = DatasetExport.Status.DONE
        export.finished_at = timezone.now()
        export.save()
    except Exception as exc:
        if stored_name:
            try:
                export.file.storage.delete(stored_name)
            except Exception:  # pragma: no cover - best effort; the record says failed
                pass
        export.file.name = ""
        export.status = DatasetExport.Status.FAILED
        export.error = f"{type(exc).__name__}: {exc}"[:10000]
        export.finished_at = timezone.now()
        DatasetExport.objects.filter(pk=export.pk).update(
            file="", status=export.status, error=export.error, finished_at=export.finished_at
        )
        raise ExportFailed(export) from exc
    finally:
        if tmp_path:
            Path(tmp_path).unlink(missing_ok=True)

