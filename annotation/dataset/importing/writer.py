"""Writing a checked plan: the new images into storage (``store_images``), then, in the
caller's transaction, the new contexts, scenarios, imported raters, ratings and aggregates
in bulk and the scoring of new scenarios queued (``write_rows``). See
docs/dataset-import.md, "Validation and writing"."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import F

from annotation.images import image_file_name
from annotation.models import Context, ImportBatch, ImportedAggregate, ImportedRater, ImportedRating, Scenario
from modelloop import services as modelloop_services

from .errors import ChangedMeanwhile
from .images import ImageSource
from .matching import Group, load_stored, match_stored

logger = logging.getLogger("annotation.imports")  # the import's logger name, as before the split

CONTEXT_BATCH = 500
SCENARIO_BATCH = 1000
RATING_BATCH = 1000
_PG_LOCK_KEY = 0x4D4F52414C45  # "MORALE": serialises imports on PostgreSQL


def store_images(groups: list[Group], source: ImageSource, kept: dict[str, bytes]) -> dict[str, str]:
    """Store each distinct new image once; return sha256 -> storage name.

    Names follow the ``Context.image`` field's ``upload_to`` and ``annotation.images``'
    naming rule; the storage makes each unique.
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
            name = f"{folder}/{image_file_name(data)}"  # from what Pillow detects, never the file's own name
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
    scenario_pk: dict[tuple[int, str], int] = {}  # (context pk, casefolded text) -> scenario pk
    canary: dict[int, bool] = {}
    new_keys = []
    for group in groups.values():
        for folded, (s, _) in group.scenarios.items():
            if (group.pk, folded) in stored.scenarios:
                present += 1
                row = stored.scenarios[(group.pk, folded)]
                scenario_pk[(group.pk, folded)], canary[row[0]] = row[0], row[4]
                continue
            new_keys.append((group.pk, folded))
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
    for key, scenario in zip(new_keys, scenarios):
        scenario_pk[key], canary[scenario.pk] = scenario.pk, scenario.is_canary
    modelloop_services.scoring_enqueue(scenario_ids=[s.pk for s in scenarios])
    return {
        "contexts_created": len(contexts),
        "contexts_present": len(groups) - len(contexts),
        "scenarios_created": len(scenarios),
        "scenarios_present": present,
        "images_stored": len({g.sha256 for g in new}),
        **_write_ratings(batch, groups, stored, scenario_pk, canary),
    }


def _write_ratings(batch: ImportBatch, groups: dict[tuple, Group], stored, scenario_pk: dict, canary: dict) -> dict:
    """The new raters, ratings and aggregates of a matched plan, in bulk; with the batch's
    ``count_towards_target`` option, the judgment counters of their (non-canary) scenarios
    and contexts grow by them too, under row locks in id order (as a submit does)."""
    counts = Counter()
    fill = bool(batch.options.get("count_towards_target"))
    ratings, aggregates = [], []
    for group in groups.values():
        counts["ratings_present"] += len(group.present_ratings)
        counts["ratings_live"] += len(group.live_ratings)
        counts["aggregates_present"] += len(group.present_aggregates)
        done = group.present_ratings | group.live_ratings
        ratings += [(scenario_pk[(group.pk, k[0])], r) for k, (r, _) in group.ratings.items() if k not in done]
        aggregates += [
            (scenario_pk[(group.pk, k[0])], a) for k, (a, _) in group.aggregates.items() if k not in group.present_aggregates
        ]
    raters = dict(stored.raters)
    missing = sorted({r.rater for _, r in ratings} - raters.keys())
    created = [ImportedRater(external_id=external_id, first_batch=batch) for external_id in missing]
    ImportedRater.objects.bulk_create(created, batch_size=RATING_BATCH)
    raters.update((r.external_id, r.pk) for r in created)
    ImportedRating.objects.bulk_create(
        (
            ImportedRating(batch=batch, rater_id=raters[r.rater], scenario_id=s_pk, score=r.score, modality=r.modality,
                           rated_at=r.rated_at, counts_towards_target=fill)
            for s_pk, r in ratings
        ),
        batch_size=RATING_BATCH,
    )
    ImportedAggregate.objects.bulk_create(
        (
            ImportedAggregate(batch=batch, scenario_id=s_pk, rater_group=a.rater_group, mean=a.mean, raters=a.raters,
                              counts_towards_target=fill)
            for s_pk, a in aggregates
        ),
        batch_size=RATING_BATCH,
    )
    if fill:
        slots = Counter(s for s, _ in ratings)
        for s_pk, a in aggregates:
            slots[s_pk] += a.raters
        _count_towards_target(slots, canary)
    return {
        "raters_created": len(created),
        "ratings_created": len(ratings),
        "ratings_present": counts["ratings_present"],
        "ratings_live": counts["ratings_live"],
        "aggregates_created": len(aggregates),
        "aggregates_present": counts["aggregates_present"],
        "counts_towards_target": fill,
    }


def _count_towards_target(slots: Counter, canary: dict[int, bool]) -> None:
    """Add ``slots[scenario id]`` judgments to the counters of these scenarios and their
    contexts (canaries hold no slots). One UPDATE per distinct increment, not one per scenario."""
    per_scenario = Counter({s: n for s, n in slots.items() if not canary[s]})
    if not per_scenario:
        return
    ids = sorted(per_scenario)
    per_context = Counter()
    for start in range(0, len(ids), 900):  # locked in id order, chunk after chunk: no deadlock with a claim
        for pk, context_id in (
            Scenario.objects.select_for_update().filter(pk__in=ids[start : start + 900]).order_by("id")
            .values_list("pk", "context_id")
        ):
            per_context[context_id] += per_scenario[pk]
    for counter, model in ((per_scenario, Scenario), (per_context, Context)):
        by_step: dict[int, list[int]] = {}
        for pk, step in counter.items():
            by_step.setdefault(step, []).append(pk)
        for step, pks in by_step.items():
            for start in range(0, len(pks), 900):
                model.objects.filter(pk__in=pks[start : start + 900]).update(judgment_count=F("judgment_count") + step)
