"""The import service: ``import_contexts`` (the one implementation, used by ``manage.py
import_contexts`` and the admin), and for large admin uploads ``import_queue`` / ``import_run``
/ ``imports_resume``; each run recorded in an ``ImportBatch``. The inputs and rules:
docs/dataset-import.md."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from datetime import timedelta
from pathlib import Path

from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from annotation.models import Context, ImportBatch

from .errors import ChangedMeanwhile, FileError, ImportFailed, row_error
from .images import check_images, open_images
from .matching import group_rows, load_stored, match_stored
from .readers import FORMATS, csv_rows, detect_format, file_sha256, jsonl_rows
from .writer import delete_files, store_images, write_rows

logger = logging.getLogger("annotation.imports")  # the name bench/import_bench.py and log filters know

MAX_STORED_ERRORS = 1000


def _finish(batch: ImportBatch, status: str, counts: dict, errors: list[dict]) -> ImportBatch:
    """Record the outcome: errors sorted by row, the first ``MAX_STORED_ERRORS`` kept."""
    errors = sorted(errors, key=lambda e: (e["row"] is not None, e["row"] or 0))
    kept = errors[:MAX_STORED_ERRORS]
    if len(errors) > MAX_STORED_ERRORS:
        kept.append(row_error(None, None, f"... and {len(errors) - MAX_STORED_ERRORS} more errors (not stored)."))
    batch.status = status
    batch.counts = {**counts, "errors": len(errors)}
    batch.errors = kept
    batch.finished_at = timezone.now()
    batch.save(update_fields=["status", "counts", "errors", "finished_at"])
    return batch


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
    if batch is None:
        batch = ImportBatch(created_by=created_by)
    batch.file_name, batch.file_sha256, batch.format = file_name, "", fmt or ""
    batch.status = ImportBatch.Status.RUNNING
    batch.options = {
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
        mark = time.perf_counter()
        kept: dict[str, bytes] = {}
        distinct_images = check_images(rows, source, kept) if source is not None else 0
        timings["check_images"] = time.perf_counter() - mark

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

        # 3. write: new images first, then one transaction
        mark = time.perf_counter()
        images = store_images([g for g in groups.values() if g.pk is None], source, kept)
        kept.clear()
        images_to_delete = list(images.values())
        timings["store_images"] = time.perf_counter() - mark
        mark = time.perf_counter()
        with transaction.atomic():
            counts.update(write_rows(batch, groups, images))
            _finish(batch, ImportBatch.Status.DONE, counts, errors)
            timings["insert"] = time.perf_counter() - mark
            mark = time.perf_counter()
        timings["commit_and_queue_scoring"] = time.perf_counter() - mark  # on_commit: the scoring tasks
        images_to_delete = []
        if counts["images_stored"] < len(images):  # another import stored some of them meanwhile
            used = set(Context.objects.filter(import_batch=batch).values_list("image_sha256", flat=True))
            delete_files(name for sha, name in images.items() if sha not in used)
        timings["total"] = time.perf_counter() - started
        logger.info("import #%s done: %s; seconds %s", batch.pk, json.dumps(counts),
                    json.dumps({k: round(v, 3) for k, v in timings.items()}), extra={"timings": timings})
        return batch
    except FileError as exc:
        if batch.pk is None:
            batch.save()
        return _finish(batch, ImportBatch.Status.REJECTED, {}, [row_error(exc.row, exc.field, exc.message)])
    except Exception as exc:
        delete_files(images_to_delete)
        images_to_delete = []
        if batch.pk is None:
            batch.format = batch.format or "?"
            batch.save()
        if isinstance(exc, ChangedMeanwhile):
            message = "Another import stored some of these contexts or scenarios meanwhile; nothing was imported. Run it again."
        else:
            message = f"{type(exc).__name__}: {exc}"[:2000]
        logger.exception("import #%s failed", batch.pk)
        _finish(batch, ImportBatch.Status.FAILED, {}, [row_error(None, None, message)])
        raise ImportFailed(batch) from exc
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
    from ... import tasks

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
    transaction.on_commit(lambda: tasks.send_or_leave_queued(tasks.import_batch, batch.pk))
    return batch


def import_run(batch_id: int) -> ImportBatch | None:
    """Import a queued batch (the body of task ``annotation.import_batch``); idempotent.

    Claims it with one conditional UPDATE (queued -> running), so a repeated message does
    nothing; returns None then. Outcomes are recorded on the batch, never raised.
    """
    if not ImportBatch.objects.filter(pk=batch_id, status=ImportBatch.Status.QUEUED).update(
        status=ImportBatch.Status.RUNNING
    ):
        return None
    batch = ImportBatch.objects.get(pk=batch_id)
    stored = batch.options.get("stored") or {}
    try:
        with default_storage.open(stored["data"], "rb") as data, default_storage.open(stored["images"], "rb") as zipped:
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
    except (KeyError, OSError) as exc:  # the uploaded files are gone
        _finish(batch, ImportBatch.Status.FAILED, {}, [row_error(None, None, f"the uploaded files are missing: {exc}")])
    finally:
        for name in stored.values():
            default_storage.delete(name)
    batch.refresh_from_db()
    return batch


def imports_resume() -> int:
    """Re-send imports left queued for more than a minute (the broker was down)."""
    from ... import tasks

    cutoff = timezone.now() - timedelta(minutes=1)
    ids = list(
        ImportBatch.objects.filter(status=ImportBatch.Status.QUEUED, created_at__lt=cutoff).values_list("pk", flat=True)
    )
    for batch_id in ids:
        tasks.send_or_leave_queued(tasks.import_batch, batch_id)
    return len(ids)
