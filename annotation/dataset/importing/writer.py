"""Writing a checked plan: the new images into storage (``store_images``), then, in the
caller's transaction, the new contexts and scenarios in bulk and their scoring queued
(``write_rows``). See docs/dataset-import.md, "Validation and writing"."""

from __future__ import annotations

import hashlib
import logging
import posixpath

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

from annotation.models import Context, ImportBatch, Scenario
from modelloop import services as modelloop_services

from .errors import ChangedMeanwhile
from .images import ImageSource
from .matching import Group, load_stored, match_stored

logger = logging.getLogger("annotation.imports")  # the import's logger name, as before the split

CONTEXT_BATCH = 500
SCENARIO_BATCH = 1000
_PG_LOCK_KEY = 0x4D4F52414C45  # "MORALE": serialises imports on PostgreSQL


def store_images(groups: list[Group], source: ImageSource, kept: dict[str, bytes]) -> dict[str, str]:
    """Store each distinct new image once; return sha256 -> storage name.

    Names follow the ``Context.image`` field's ``upload_to``; the storage makes each unique.
    """
    image_field = Context._meta.get_field("image")
    folder = image_field.generate_filename(None, "x").rpartition("/")[0]  # e.g. contexts/2026/11
    stored: dict[str, str] = {}
    try:
        for group in groups:
            if group.sha256 in stored:
                continue
            data = kept.pop(group.sha256, None)
            if data is None:
                data = source.read(group.context.image_path)
            if hashlib.sha256(data).hexdigest() != group.sha256:
                raise RuntimeError(f"{group.context.image_path} changed while it was being imported")
            name = f"{folder}/{posixpath.basename(group.context.image_path)}"
            stored[group.sha256] = default_storage.save(name, ContentFile(data), max_length=image_field.max_length)
    except BaseException:
        delete_files(stored.values())
        raise
    return stored


def delete_files(names) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # noqa: BLE001 - best effort; the import's outcome is already decided
            logger.warning("Could not delete the imported image %s", name, exc_info=True)


def write_rows(batch: ImportBatch, groups: dict[tuple, Group], images: dict[str, str]) -> dict:
    """In the caller's transaction: re-match, insert, queue scoring. Returns the counts.

    ``images`` (sha256 -> stored name) must hold the image of every context that was new at
    validation; one that another import has stored since is matched, not created.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PG_LOCK_KEY])
    stored = load_stored(groups)
    if match_stored(groups, stored):
        raise ChangedMeanwhile()
    new = [g for g in groups.values() if g.pk is None]
    contexts = [
        Context(
            image=images[g.sha256],
            image_sha256=g.sha256,
            setting=g.context.setting,
            source=g.context.source or "",
            image_origin=g.context.image_origin or Context.ImageOrigin.REAL,
            image_unreliable=bool(g.context.image_unreliable),
            external_id=g.context.external_id,
            import_batch=batch,
        )
        for g in new
    ]
    Context.objects.bulk_create(contexts, batch_size=CONTEXT_BATCH)
    for group, context in zip(new, contexts):
        if context.pk is None:  # pragma: no cover - every supported database returns ids
            raise RuntimeError("the database did not return the new contexts' ids")
        group.pk = context.pk
    scenarios = []
    present = 0
    for group in groups.values():
        for folded, (s, _) in group.scenarios.items():
            if (group.pk, folded) in stored.scenarios:
                present += 1
                continue
            scenarios.append(
                Scenario(
                    context_id=group.pk,
                    text=s.text,
                    origin=Scenario.Origin.SEED,
                    text_only_label=s.text_only_label,
                    is_canary=bool(s.is_canary),
                    canary_min_score=s.canary_min_score,
                    canary_max_score=s.canary_max_score,
                )
            )
    Scenario.objects.bulk_create(scenarios, batch_size=SCENARIO_BATCH)
    modelloop_services.scoring_enqueue(scenario_ids=[s.pk for s in scenarios])
    return {
        "contexts_created": len(contexts),
        "contexts_present": len(groups) - len(contexts),
        "scenarios_created": len(scenarios),
        "scenarios_present": present,
        "images_stored": len({g.sha256 for g in new}),
    }
