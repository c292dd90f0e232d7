"""The import service: ``import_contexts`` (the one implementation, used by ``manage.py
import_contexts`` and the admin), and for large admin uploads ``import_queue`` / ``import_run``
/ ``imports_resume``; each run recorded in an ``ImportBatch``, which follows the one job
lifecycle of ``morale.jobs`` (``IMPORT_JOB``). Rows are written in chunks of
``MORALE_IMPORT_CHUNK_ROWS``, each in its own short transaction. The inputs and rules:
docs/dataset-import.md."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotation.models import Context, ImportBatch, ImportedAggregate, ImportedRater, ImportedRating
from morale import jobs

from .errors import ChangedMeanwhile, FileError, ImportFailed, row_error
from .images import check_images, open_images
from .matching import group_rows, load_stored, match_stored
from .readers import FORMATS, csv_rows, detect_format, file_sha256, jsonl_rows
from .writer import delete_files, store_images, write_rows

logger = logging.getLogger("annotation.imports")  # the name bench/import_bench.py and log filters know

MAX_STORED_ERRORS = 1000


def _send(batch_id: int) -> None:
    from ... import tasks

    tasks.import_batch.delay(batch_id)


def _failure(reason: str) -> dict:
    return {"errors": [row_error(None, None, reason)], "counts": {"errors": 1}}


# A queued batch whose worker died is imported again from its kept files (re-importing
# matches what the lost attempt wrote: nothing twice); an inline one (no files kept) fails.
IMPORT_JOB = jobs.JobKind(
    name="import", model=ImportBatch, send=_send, resumable=Q(options__has_key="stored"), failure=_failure
)


def _finish(batch: ImportBatch, status: str, counts: dict, errors: list[dict]) -> ImportBatch:
    """Record the outcome: errors sorted by row, the first ``MAX_STORED_ERRORS`` kept.
    Raises JobLost (nothing written) if the batch was taken from this worker meanwhile."""
    errors = sorted(errors, key=lambda e: (e["row"] is not None, e["row"] or 0))
    kept = errors[:MAX_STORED_ERRORS]
    if len(errors) > MAX_STORED_ERRORS:
        kept.append(row_error(None, None, f"... and {len(errors) - MAX_STORED_ERRORS} more errors (not stored)."))
    jobs.write(IMPORT_JOB, batch, status=status, counts={**counts, "errors": len(errors)}, errors=kept,
               finished_at=timezone.now())
    return batch


def import_should_queue(data_upload, images_upload) -> bool:
    """Whether an upload is too large to import within a web request: more bytes than
    ``MORALE_IMPORT_INLINE_MAX_BYTES`` (both files) or more lines (rows) in the data file
    than ``MORALE_IMPORT_INLINE_MAX_ROWS``. Counting lines reads the data file once."""
    if data_upload.size + (images_upload.size if images_upload is not None else 0) > settings.MORALE_IMPORT_INLINE_MAX_BYTES:
        return True
    lines = 0
    for chunk in data_upload.chunks():
        lines += chunk.count(b"\n")
        if lines > settings.MORALE_IMPORT_INLINE_MAX_ROWS:
            break
    data_upload.seek(0)
    return lines > settings.MORALE_IMPORT_INLINE_MAX_ROWS


def import_contexts(
    *,
    data_file,
    images,
    created_by=None,
    allow_partial: bool = False,
    fmt: str | None = None,
    file_name: str | None = None,
    images_name: str | None = None,
    batch: ImportBatch | None = None,
    count_towards_target: bool = False,
) -> ImportBatch:
    """Import contexts, scenarios and ratings from a CSV or JSON Lines file (docs/dataset-import.md).

    ``batch``: a queued batch already claimed by ``import_run`` (its record is reused);
    otherwise a new one is made.

    ``data_file``: a path or a binary file object (e.g. an upload); ``images``: a folder
    path, a zip path or a binary zip file object, or None for a file whose rows only name
    stored contexts (a file of ratings). ``count_towards_target``: the imported ratings
    fill the scenarios' ``MORALE_JUDGMENTS_PER_SCENARIO`` slots (default: they never take
    a live annotator's place). ``fmt``: ``"csv"`` or ``"jsonl"``; by
    default from the file name's extension, else from its first byte. Returns the
    ``ImportBatch``: ``done`` (``counts``: created vs already present; with
    ``allow_partial``, ``errors`` lists the rows skipped) or ``rejected`` (``errors``, nothing
    imported). Raises ``ImportFailed`` (batch marked ``failed``, nothing imported) on an
    unexpected error, ValueError for a bad ``fmt``.
    """
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, not {fmt!r}")
    opened = None
    if isinstance(data_file, (str, os.PathLike)):
        file_name = file_name or Path(data_file).name
        opened = data_file = open(data_file, "rb")
    file_name = (file_name or Path(getattr(data_file, "name", "") or "upload").name)[:300]
    if images_name is None and images not in (None, ""):
        images_name = str(images) if isinstance(images, (str, os.PathLike)) else getattr(images, "name", "upload")
    if batch is None:  # an inline import: claimed by this process, beating like a worker's
        batch = ImportBatch(created_by=created_by, **jobs.claimed_fields())
    batch.file_name, batch.file_sha256, batch.format = file_name, "", fmt or ""
    batch.status = ImportBatch.Status.RUNNING
    kept_files = {"stored": batch.options["stored"]} if "stored" in (batch.options or {}) else {}
    batch.options = {
        **kept_files,  # a queued batch's uploaded files: a lost attempt is resumed from them
        "allow_partial": bool(allow_partial),
        "images": images_name or "",
        "count_towards_target": bool(count_towards_target),
    }
    started = time.perf_counter()
    timings: dict[str, float] = {}
    source = None
    images_to_delete: list[str] = []
    try:
        batch.file_sha256 = file_sha256(data_file)
        head = data_file.read(64)
        data_file.seek(0)
        try:
            batch.format = fmt or detect_format(file_name, head)
        except FileError:
            batch.format = "?"
            raise
        finally:
            batch.full_clean()
            batch.save()
        if images not in (None, ""):
            source = open_images(images, name=images_name)

        # 1. every row, checked on its own
        reader = csv_rows if batch.format == "csv" else jsonl_rows
        rows = list(reader(data_file))
        if source is None and any(r.context is not None and not r.context.refers_only for r in rows):
            source = open_images(images)  # FileError: the rows need images and none were given
        timings["parse"] = time.perf_counter() - started
        jobs.beat(IMPORT_JOB, batch)
        mark = time.perf_counter()
        kept: dict[str, bytes] = {}
        distinct_images = check_images(rows, source, kept) if source is not None else 0
        timings["check_images"] = time.perf_counter() - mark
        jobs.beat(IMPORT_JOB, batch)

        # 2. rows of one context agree with each other and with the database
        mark = time.perf_counter()
        while True:
            groups = group_rows(rows)
            db_errors = match_stored(groups, load_stored(groups))
            by_row = {}
            for error in db_errors:
                by_row.setdefault(error["row"], []).append(error)
            for row in rows:
                row.errors.extend(by_row.get(row.number, []))
            if not db_errors:
                break
        timings["match"] = time.perf_counter() - mark
        errors = [e for row in rows for e in row.errors]
        counts = {
            "rows": len(rows),
            "rows_with_errors": sum(1 for row in rows if row.errors),
            "images_checked": distinct_images,
        }
        if errors and not allow_partial:
            logger.info("import #%s rejected: %d error(s) in %d row(s)", batch.pk, len(errors), counts["rows_with_errors"])
            return _finish(batch, ImportBatch.Status.REJECTED, counts, errors)

        # 3. write, chunk after chunk: the chunk's new images, then its rows in one short
        # transaction (no import holds the database's write lock for long).
        jobs.beat(IMPORT_JOB, batch)
        images: dict[str, str] = {}
        chunks = _chunks(groups, settings.MORALE_IMPORT_CHUNK_ROWS)
        written = {"chunks": 0, "rows": 0}
        timings.update(store_images=0.0, insert=0.0, transactions=0, longest_transaction=0.0)
        try:
            for chunk in chunks:
                mark = time.perf_counter()
                new_images = store_images(
                    [g for g in chunk.values() if g.pk is None and g.sha256 not in images], source, kept
                )
                images.update(new_images)
                images_to_delete = list(new_images.values())
                timings["store_images"] += time.perf_counter() - mark
                mark = time.perf_counter()
                chunk_rows = sum(len(g.rows) for g in chunk.values())
                with transaction.atomic():
                    for name, value in write_rows(batch, chunk, images).items():
                        counts[name] = value if isinstance(value, bool) else counts.get(name, 0) + value
                    # Progress only: the created/present counts are recorded once, for the whole file.
                    jobs.write(IMPORT_JOB, batch, counts={"rows": counts["rows"], "rows_written": written["rows"] + chunk_rows})
                images_to_delete = []
                written["chunks"] += 1
                written["rows"] += chunk_rows
                timings["longest_transaction"] = max(timings["longest_transaction"], time.perf_counter() - mark)
                timings["insert"] += time.perf_counter() - mark
                timings["transactions"] += 1
        except Exception as exc:
            if written["chunks"] and not isinstance(exc, jobs.JobLost):
                raise _PartlyWritten(written, len(chunks)) from exc
            raise
        kept.clear()
        mark = time.perf_counter()
        counts.setdefault("images_stored", 0)
        used = set(Context.objects.filter(import_batch=batch).values_list("image_sha256", flat=True))
        counts["images_stored"] = len(used & images.keys())
        delete_files(name for sha, name in images.items() if sha not in used)  # stored meanwhile by another import
        if batch.attempts > 1:
            _recount_resumed(batch, counts)
        _finish(batch, ImportBatch.Status.DONE, counts, errors)
        timings["finish"] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - started
        logger.info("import #%s done: %s; seconds %s", batch.pk, json.dumps(counts),
                    json.dumps({k: round(v, 3) for k, v in timings.items()}), extra={"timings": timings})
        return batch
    except FileError as exc:
        if batch.pk is None:
            batch.save()
        return _finish(batch, ImportBatch.Status.REJECTED, {}, [row_error(exc.row, exc.field, exc.message)])
    except jobs.JobLost:
        delete_files(images_to_delete)
        images_to_delete = []
        raise  # another attempt owns the batch now: write nothing more
    except Exception as exc:
        delete_files(images_to_delete)
        images_to_delete = []
        if batch.pk is None:
            batch.format = batch.format or "?"
            batch.save()
        partly, cause = (exc, exc.__cause__) if isinstance(exc, _PartlyWritten) else (None, exc)
        if isinstance(cause, ChangedMeanwhile):
            message = "Another import stored some of these contexts or scenarios meanwhile"
            message += "." if partly else "; nothing was imported. Run it again."
        else:
            message = f"{type(cause).__name__}: {cause}"[:2000]
        outcome = {}
        if partly is not None:
            message += (
                f" {partly.written['chunks']} of {partly.total} chunks ({partly.written['rows']} rows) were written "
                "before it stopped and stay imported; the rest was not. Import the same file again to finish: "
                "what is already in is matched, not imported twice."
            )
            outcome = {"rows_written": partly.written["rows"], "chunks_written": partly.written["chunks"],
                       "chunks": partly.total}
        logger.exception("import #%s failed", batch.pk)
        _finish(batch, ImportBatch.Status.FAILED, outcome, [row_error(None, None, message)])
        raise ImportFailed(batch) from cause
    finally:
        if images_to_delete:  # interrupted (KeyboardInterrupt, SystemExit) after storing images
            delete_files(images_to_delete)
        if source is not None:
            source.close()
        if opened is not None:
            opened.close()


def import_queue(*, data_upload, images_upload, created_by=None, allow_partial: bool = False) -> ImportBatch:
    """Keep the two uploaded files in private media (``imports/<batch>/``), record a queued
    batch and hand it to a worker (task ``annotation.import_batch``) after commit.

    With the broker down the batch stays queued and the periodic ``annotation.resume_jobs``
    sends it again. The files are deleted when the worker is done with them.
    """
    batch = ImportBatch(
        file_name=Path(data_upload.name or "upload").name[:300],
        file_sha256="",
        format="",
        status=ImportBatch.Status.QUEUED,
        options={"allow_partial": bool(allow_partial), "images": Path(images_upload.name or "upload").name},
        created_by=created_by,
    )
    batch.full_clean(exclude=["file_sha256", "format"])  # known once the worker reads the file
    batch.save()
    folder = f"imports/{batch.pk}-{uuid.uuid4().hex}"
    stored = {
        "data": default_storage.save(f"{folder}/{batch.file_name}", data_upload),
        "images": default_storage.save(f"{folder}/images.zip", images_upload),
    }
    batch.options = {**batch.options, "stored": stored}
    batch.save(update_fields=["options"])
    transaction.on_commit(lambda: jobs.send(IMPORT_JOB, batch.pk))
    return batch


def import_run(batch_id: int) -> ImportBatch | None:
    """Import a queued batch (the body of task ``annotation.import_batch``); idempotent.

    Claims it with one conditional UPDATE (``morale.jobs.claim``: queued -> running), so a
    repeated message does nothing; returns None then. Outcomes are recorded on the batch, never
    raised. A batch queued again after its worker died is imported again from the kept files.
    """
    batch = jobs.claim(IMPORT_JOB, batch_id)
    if batch is None:
        return None
    stored = batch.options.get("stored") or {}
    keep_files = False
    try:
        with default_storage.open(stored["data"], "rb") as data, default_storage.open(stored["images"], "rb") as zipped, \
                jobs.working_on(IMPORT_JOB, batch):
            import_contexts(
                data_file=data,
                images=zipped,
                created_by=batch.created_by,
                allow_partial=batch.options.get("allow_partial", False),
                file_name=batch.file_name,
                images_name=batch.options.get("images"),
                batch=batch,
            )
    except ImportFailed:
        pass  # recorded on the batch
    except jobs.JobLost as exc:  # declared lost meanwhile: the next attempt needs the files
        keep_files = True
        logger.warning("import #%s abandoned: %s", batch_id, exc)
    except (KeyError, OSError) as exc:  # the uploaded files are gone
        jobs.fail(IMPORT_JOB, batch, f"the uploaded files are missing: {exc}")
    finally:
        if not keep_files:
            for name in stored.values():
                default_storage.delete(name)
    batch.refresh_from_db()
    return batch


def imports_resume() -> int:
    """The sweep of imports (``morale.jobs.sweep``): re-send batches left queued (broker down,
    message lost); a running batch silent for ``MORALE_JOB_STALE_MINUTES`` (killed worker) is
    queued again when its files are kept, else failed with the reason. Returns the sends tried."""
    counts = jobs.sweep(IMPORT_JOB)
    return counts["sent"] + counts["unsent"]


class _PartlyWritten(Exception):
    """Some chunks were committed before the import stopped (the cause is ``__cause__``)."""

    def __init__(self, written: dict, total: int):
        super().__init__(f"{written['chunks']} of {total} chunks written")
        self.written, self.total = written, total


def _chunks(groups: dict, rows_per_chunk: int) -> list[dict]:
    """Whole contexts (with all their rows) in chunks of about ``rows_per_chunk`` rows written,
    a row being a scenario, a rating or a mean score (a JSON Lines line of a context with
    four scenarios and twelve ratings weighs 16, like the CSV rows it stands for)."""
    if rows_per_chunk < 1:
        raise ValueError(f"MORALE_IMPORT_CHUNK_ROWS must be at least 1, not {rows_per_chunk}")
    chunks, current, size = [], {}, 0
    for key, group in groups.items():
        current[key] = group
        size += max(1, len(group.scenarios) + len(group.ratings) + len(group.aggregates))
        if size >= rows_per_chunk:
            chunks.append(current)
            current, size = {}, 0
    if current or not chunks:
        chunks.append(current)  # nothing new at all: one (empty) write still records the counts
    return chunks


def _recount_resumed(batch: ImportBatch, counts: dict) -> None:
    """A batch imported again after its worker died: what the lost attempt wrote was matched
    as "present"; count it as created by this batch (the rows that carry the batch say so)."""
    for created, present, rows in (
        ("contexts_created", "contexts_present", Context.objects.filter(import_batch=batch)),
        ("ratings_created", "ratings_present", ImportedRating.objects.filter(batch=batch)),
        ("aggregates_created", "aggregates_present", ImportedAggregate.objects.filter(batch=batch)),
        ("raters_created", None, ImportedRater.objects.filter(first_batch=batch)),
    ):
        total = rows.count()
        moved = total - counts.get(created, 0)
        counts[created] = total
        if present is not None:
            counts[present] = max(0, counts.get(present, 0) - moved)
    counts["resumed"] = True
