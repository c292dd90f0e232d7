"""Database -> export records (one dict per context, the JSONL line), chunk by chunk, and
the counts of what was read, exported and dropped (``Tally``). Which judgments count is
``annotation.dataset.selection``; the rules and the queries are in docs/dataset-export.md.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import timezone as dt_timezone

import numpy as np
from django.db import connection
from django.db.models import IntegerField, Max, Q, Value

from annotation.models import Annotator, Context, ImportedAggregate, ImportedRater, ImportedRating, Judgment, Scenario

from ..format import FORMAT, SPLITS, aggregate, split_for
from ..selection import select_judgments
from .options import ExportOptions

DROPPED_KEYS = (
    "canary_scenarios",
    "canary_judgments",
    "screened_judgments",
    "imported_judgments",
    "failed_canary_judgments",
    "scenarios_without_judgments",
    "high_sd_scenarios",
    "high_sd_judgments",
    "contexts_without_scenarios",
)
SOURCE_KEYS = ("initial_replaced_by_reconfirmation", "reconfirmed_unused")

_CONTEXT_COLUMNS = ("pk", "image", "image_sha256", "setting", "image_origin", "image_unreliable")
_SCENARIO_COLUMNS = ("pk", "context_id", "text", "origin", "text_only_label", "is_canary")
_JUDGMENT_COLUMNS = (
    "pk",
    "scenario_id",
    "annotator_id",
    "score",
    "modality",
    "phase",
    "revises_id",
    "model_score",
    "canary_passed",
    "seconds_spent",
    "created_at",
    "import_batch",  # NULL for a judgment (annotated); an imported rating's batch
)
# positions in a judgment row
_J_ID, _J_SCN, _J_ANN, _J_SCORE, _J_MOD, _J_PHASE, _J_REVISES, _J_MODEL, _J_CANARY, _J_SECS, _J_AT, _J_BATCH = range(
    len(_JUDGMENT_COLUMNS)
)
_INITIAL = Judgment.Phase.INITIAL.value
_SCREENED = Annotator.Status.SCREENED_OUT.value
_RECONFIRMED = Judgment.Phase.RECONFIRMED.value


class Tally:
    """Counts of what was read, exported and dropped."""

    def __init__(self):
        self.read = Counter()
        self.dropped = Counter()
        self.source = Counter()
        self.per_split = {s: Counter() for s in SPLITS}
        self.annotators = {s: set() for s in SPLITS}
        self.imported = Counter()  # exported imported ratings and aggregates, dropped aggregates
        self.imported_raters = set()

    def as_dict(self) -> dict:
        splits = {
            s: {
                "contexts": self.per_split[s]["contexts"],
                "scenarios": self.per_split[s]["scenarios"],
                "judgments": self.per_split[s]["judgments"],
                "annotators": len(self.annotators[s]),
            }
            for s in SPLITS
        }
        return {
            "contexts": sum(v["contexts"] for v in splits.values()),
            "scenarios": sum(v["scenarios"] for v in splits.values()),
            "judgments": sum(v["judgments"] for v in splits.values()),
            "annotators": len(self.annotators["train"] | self.annotators["test"]),
            "splits": splits,
            "dropped": {k: self.dropped[k] for k in DROPPED_KEYS},
            "source": {k: self.source[k] for k in SOURCE_KEYS},
            "read": {k: self.read[k] for k in ("contexts", "scenarios", "judgments", "aggregates")},
            # How much of the above came from imports (docs/dataset-export.md, "Imported ratings").
            "imported": {
                "judgments": self.imported["judgments"],
                "raters": len(self.imported_raters),
                "aggregates": self.imported["aggregates"],
                "aggregate_raters": self.imported["aggregate_raters"],
                "aggregates_dropped": self.imported["aggregates_dropped"],
            },
        }


def high_water_marks() -> dict:
    """The largest context, scenario, judgment and imported rating / aggregate ids now: an
    export reads up to these."""
    return {
        "context_id": Context.objects.aggregate(m=Max("pk"))["m"] or 0,
        "scenario_id": Scenario.objects.aggregate(m=Max("pk"))["m"] or 0,
        "judgment_id": Judgment.objects.aggregate(m=Max("pk"))["m"] or 0,
        "imported_rating_id": ImportedRating.objects.aggregate(m=Max("pk"))["m"] or 0,
        "imported_aggregate_id": ImportedAggregate.objects.aggregate(m=Max("pk"))["m"] or 0,
    }


class _AnnotatorCache:
    """Annotator id -> (public id as text, screened out?), fetched once per annotator; the
    same for imported raters (``model=ImportedRater``: never screened out).

    Cheaper than joining the annotator into every judgment row (a UUID object per row);
    holds one small entry per distinct annotator, like the annotator counts do.
    """

    def __init__(self, model=Annotator):
        self.model = model
        self.known: dict[int, tuple[str, bool]] = {}

    def load(self, ids) -> dict[int, tuple[str, bool]]:
        missing = sorted(set(ids) - self.known.keys())
        columns = ("pk", "public_id", "status") if self.model is Annotator else ("pk", "public_id")
        for start in range(0, len(missing), 900):  # under any SQLite parameter limit
            for pk, public_id, *status in self.model.objects.filter(pk__in=missing[start : start + 900]).values_list(
                *columns
            ):
                self.known[pk] = (str(public_id), status == [_SCREENED])
        return self.known


def _iso(dt) -> str | None:
    if dt is None:  # an imported rating without a time
        return None
    if dt.utcoffset():  # the database hands back UTC; anything else is converted
        dt = dt.astimezone(dt_timezone.utc)
    return dt.isoformat(timespec="microseconds")


def _judgment_entry(row, initial, public_id: str) -> dict:
    reconfirmed = row[_J_PHASE] == _RECONFIRMED
    return {
        "judgment_id": row[_J_ID],
        "annotator_id": public_id,
        "score": row[_J_SCORE],
        "modality": row[_J_MOD],
        "phase": row[_J_PHASE],
        "seconds_spent": row[_J_SECS],
        "created_at": _iso(row[_J_AT]),
        "revises": row[_J_REVISES] if reconfirmed else None,
        "initial_score": initial[_J_SCORE] if reconfirmed and initial is not None else None,
        "initial_modality": initial[_J_MOD] if reconfirmed and initial is not None else None,
        "model_score_shown": row[_J_MODEL] if reconfirmed else None,
        "import_batch": row[_J_BATCH],
    }


def _imported_rows(scenario_ids: list[int], marks: dict, batch: int) -> list[tuple]:
    """The imported ratings of these scenarios as judgment rows (in scenario, id order): no
    judgment id (``judgment_id`` is null in the file), the rater's id as the annotator,
    phase initial, no model score or time spent, ``rated_at`` as the time, and the batch."""
    rows = []
    for start in range(0, len(scenario_ids), batch):
        rows.extend(
            (None, scenario, rater, score, modality or None, _INITIAL, None, None, None, None, rated_at, batch_id)
            for scenario, rater, score, modality, rated_at, batch_id in ImportedRating.objects.filter(
                scenario_id__in=scenario_ids[start : start + batch], pk__lte=marks["imported_rating_id"]
            )
            .order_by("scenario_id", "pk")
            .values_list("scenario_id", "rater_id", "score", "modality", "rated_at", "batch_id")
        )
    return rows


def _imported_aggregates(scenario_ids: list[int], marks: dict, batch: int) -> dict[int, list[dict]]:
    """Scenario id -> its imported pre-aggregated scores, as the file's ``aggregates`` entries."""
    found = defaultdict(list)
    for start in range(0, len(scenario_ids), batch):
        for scenario, batch_id, group, raters, mean in (
            ImportedAggregate.objects.filter(
                scenario_id__in=scenario_ids[start : start + batch], pk__lte=marks["imported_aggregate_id"]
            )
            .order_by("scenario_id", "pk")
            .values_list("scenario_id", "batch_id", "rater_group", "raters", "mean")
        ):
            found[scenario].append({"import_batch": batch_id, "rater_group": group, "n": raters, "mean": mean})
    return found


class _ChunkJudgments:
    """A chunk's judgment rows (in scenario, id order) and imported ratings (after the
    judgments of their scenario), selected once for the whole chunk.

    The rows become numpy columns once and go through ``select_judgments`` in one call; the
    row counts go into ``tally``. ``entries(scenario_id)`` then gives a scenario's counted
    judgments as export entries, ordered by each annotator's first judgment id, the
    imported ratings last (in import order).
    """

    def __init__(
        self,
        rows: list[tuple],
        imported_rows: list[tuple],
        *,
        canary_ids: list[int],
        options: ExportOptions,
        annotators,
        raters,
        tally: Tally,
    ):
        self.annotators, self.raters = annotators, raters
        self.spans: dict[int, tuple[int, int]] = {}  # scenario id -> its slice of self.order
        self.imported: list[bool] = []
        tally.read["judgments"] += len(rows) + len(imported_rows)
        self.rows = rows + imported_rows
        if not self.rows:
            return
        imported = np.zeros(len(self.rows), dtype=bool)
        imported[len(rows) :] = True
        if imported_rows:  # each scenario's judgments, then its imported ratings (a stable sort)
            by_scenario = np.argsort(np.array([r[_J_SCN] for r in self.rows], dtype=np.int64), kind="stable")
            self.rows = [self.rows[i] for i in by_scenario.tolist()]
            imported = imported[by_scenario]
        self.imported = imported.tolist()
        rows = self.rows
        columns = list(zip(*rows))
        annotator = np.array(columns[_J_ANN], dtype=np.int64)
        scenario = np.array(columns[_J_SCN], dtype=np.int64)
        screened = np.zeros(len(rows), dtype=bool)
        live = np.flatnonzero(~imported)
        present, inverse = np.unique(annotator[live], return_inverse=True)
        screened[live] = np.array([annotators[a][1] for a in present.tolist()], dtype=bool)[inverse.reshape(-1)]
        reconfirmed = np.array(columns[_J_PHASE]) == _RECONFIRMED
        if options.include_canaries:
            canary_failed = np.fromiter((c is False for c in columns[_J_CANARY]), dtype=bool, count=len(rows))
        else:  # only canary rows can fail, and they are all left out
            canary_failed = np.zeros(len(rows), dtype=bool)
        selection = select_judgments(
            annotator=annotator,
            scenario=scenario,
            reconfirmed=reconfirmed,
            screened=screened,
            canary=np.isin(scenario, np.array(canary_ids, dtype=np.int64)),
            canary_failed=canary_failed,
            imported=imported,
            source=options.source,
            include_screened=options.include_screened,
            include_canaries=options.include_canaries,
            include_imported=options.include_imported,
        )
        tally.dropped["canary_judgments"] += selection.canary_judgments
        tally.dropped["screened_judgments"] += selection.screened_judgments
        tally.dropped["imported_judgments"] += selection.imported_judgments
        tally.dropped["failed_canary_judgments"] += selection.failed_canary_judgments
        tally.source["initial_replaced_by_reconfirmation"] += selection.initial_replaced_by_reconfirmation
        tally.source["reconfirmed_unused"] += selection.reconfirmed_unused

        counted = np.flatnonzero(selection.counted)
        # One counted row per pair; the rows are in scenario order, so ordering by the pair's
        # first row keeps scenarios together, each in the order of its annotators' first judgment.
        first = selection.pair_first[selection.pair[counted]]
        counted = counted[np.argsort(first, kind="stable")]
        initial_of_pair = np.full(selection.pair_first.size, -1, dtype=np.int64)
        initial_rows = np.flatnonzero(~reconfirmed)
        initial_of_pair[selection.pair[initial_rows]] = initial_rows
        self.order = counted.tolist()
        self.initial = initial_of_pair[selection.pair[counted]].tolist()
        ids, starts, counts = np.unique(scenario[counted], return_index=True, return_counts=True)
        self.spans = {s: (a, a + n) for s, a, n in zip(ids.tolist(), starts.tolist(), counts.tolist())}

    def entries(self, scenario_id: int) -> list[dict]:
        span = self.spans.get(scenario_id)
        if span is None:
            return []
        rows, imported = self.rows, self.imported
        ids = (self.annotators, self.raters)
        return [
            _judgment_entry(rows[i], rows[j] if j >= 0 else None, ids[imported[i]][rows[i][_J_ANN]][0])
            for i, j in zip(self.order[span[0] : span[1]], self.initial[span[0] : span[1]])
        ]


def _context_chunks(options: ExportOptions, marks: dict, max_params: int) -> Iterator[list[tuple]]:
    """The contexts to export, ``chunk_size`` rows at a time, in id order (keyset pagination)."""
    base = Context.objects.filter(pk__lte=marks["context_id"]).order_by("pk")
    if options.context_ids is not None:
        size = min(options.chunk_size, max_params)
        for start in range(0, len(options.context_ids), size):
            rows = list(base.filter(pk__in=options.context_ids[start : start + size]).values_list(*_CONTEXT_COLUMNS))
            if rows:
                yield rows
        return
    last_id = 0
    while True:
        rows = list(base.filter(pk__gt=last_id).values_list(*_CONTEXT_COLUMNS)[: options.chunk_size])
        if not rows:
            return
        yield rows
        last_id = rows[-1][0]


def export_context_total(options: ExportOptions, marks: dict) -> int:
    """How many contexts an export will read (the denominator of its progress)."""
    base = Context.objects.filter(pk__lte=marks["context_id"])
    if options.context_ids is None:
        return base.count()
    return sum(
        base.filter(pk__in=options.context_ids[start : start + 900]).count()
        for start in range(0, len(options.context_ids), 900)
    )


def iter_records(options: ExportOptions, *, marks: dict | None = None, tally: Tally | None = None) -> Iterator[dict]:
    """The export's records (one dict per context, the JSONL line), streamed in chunks.

    Reads contexts by id up to ``marks`` (``high_water_marks()`` if not given), each chunk
    of ``options.chunk_size`` contexts with one query for their scenarios, one for their
    judgments (one per 989 scenarios on SQLite, whose IN lists are limited), one each for
    their imported ratings and aggregates and, when new annotators or imported raters
    appear, one for their public ids and status.
    """
    marks = marks or high_water_marks()
    tally = tally if tally is not None else Tally()
    annotator_cache, rater_cache = _AnnotatorCache(), _AnnotatorCache(ImportedRater)
    batch = max(1, (connection.features.max_query_params or 5000) - 10)  # ids per IN (...): SQLite 999
    for contexts in _context_chunks(options, marks, batch):
        low, last_id = contexts[0][0], contexts[-1][0]
        in_chunk = Q(context_id__gte=low, context_id__lte=last_id)
        if options.context_ids is not None:  # a selection: the id range may hold others
            in_chunk &= Q(context_id__in=[c[0] for c in contexts])
        scenarios_by_context = defaultdict(list)
        for s in (
            Scenario.objects.filter(in_chunk, pk__lte=marks["scenario_id"])
            .order_by("context_id", "pk")
            .values_list(*_SCENARIO_COLUMNS)
        ):
            scenarios_by_context[s[1]].append(s)
        # By the chunk's scenario ids, not by a join on the context range: PostgreSQL would
        # answer that join with a scan of the whole judgment table per chunk (quadratic).
        # Sorted ids in id batches, each ordered by scenario and id: the rows are in that order.
        scenario_ids = sorted(s[0] for rows in scenarios_by_context.values() for s in rows)
        judgments = []
        for start in range(0, len(scenario_ids), batch):
            judgments.extend(
                Judgment.objects.filter(
                    scenario_id__in=scenario_ids[start : start + batch], pk__lte=marks["judgment_id"]
                )
                .order_by("scenario_id", "pk")
                .annotate(import_batch=Value(None, output_field=IntegerField()))
                .values_list(*_JUDGMENT_COLUMNS)
            )
        imported = _imported_rows(scenario_ids, marks, batch)
        aggregates = _imported_aggregates(scenario_ids, marks, batch)
        chunk = _ChunkJudgments(
            judgments,
            imported,
            canary_ids=[s[0] for rows in scenarios_by_context.values() for s in rows if s[5]],
            options=options,
            annotators=annotator_cache.load(j[_J_ANN] for j in judgments),
            raters=rater_cache.load(j[_J_ANN] for j in imported),
            tally=tally,
        )
        for c_id, image, image_sha256, setting, image_origin, image_unreliable in contexts:
            record = _context_record(
                scenarios_by_context.pop(c_id, []),
                chunk,
                aggregates,
                options=options,
                tally=tally,
                head={
                    "format": FORMAT,
                    "context_id": c_id,
                    "split": split_for(c_id, seed=options.split_seed, test_fraction=options.test_fraction),
                    "setting": setting,
                    "image_path": image,
                    "image_sha256": image_sha256,
                    "image_origin": image_origin,
                    "image_unreliable": image_unreliable,
                },
            )
            if record is not None:
                yield record


def _context_record(scenarios, chunk: _ChunkJudgments, aggregates, *, options, tally, head) -> dict | None:
    """Steps 5-7 of docs/dataset-export.md on one context; None when nothing is left.

    ``aggregates``: scenario id -> its imported pre-aggregated scores; they go with their
    scenario (kept with ``include_imported``, dropped with a dropped scenario)."""
    tally.read["contexts"] += 1
    out = []
    for s_id, _, text, origin, text_only_label, is_canary in scenarios:
        tally.read["scenarios"] += 1
        imported = aggregates.get(s_id, [])
        tally.read["aggregates"] += len(imported)
        if is_canary and not options.include_canaries:
            tally.dropped["canary_scenarios"] += 1
            tally.imported["aggregates_dropped"] += len(imported)
            continue
        if not options.include_imported:
            tally.imported["aggregates_dropped"] += len(imported)
            imported = []
        entries = chunk.entries(s_id)
        if not entries and not imported:
            tally.dropped["scenarios_without_judgments"] += 1
            continue
        agg = aggregate([e["score"] for e in entries], [e["modality"] for e in entries], imported)
        if options.max_sd is not None and agg["sd"] is not None and agg["sd"] > options.max_sd:
            tally.dropped["high_sd_scenarios"] += 1
            tally.dropped["high_sd_judgments"] += len(entries)
            tally.imported["aggregates_dropped"] += len(imported)
            continue
        out.append(
            {
                "scenario_id": s_id,
                "text": text,
                "origin": origin,
                "text_only_label": text_only_label,
                "is_canary": is_canary,
                **agg,
                "judgments": entries,
                "aggregates": imported,
            }
        )
    if not out:
        tally.dropped["contexts_without_scenarios"] += 1
        return None
    split = head["split"]
    counter = tally.per_split[split]
    counter["contexts"] += 1
    counter["scenarios"] += len(out)
    seen = tally.annotators[split]
    for s in out:
        counter["judgments"] += len(s["judgments"])
        seen.update(e["annotator_id"] for e in s["judgments"])
        from_imports = [e["annotator_id"] for e in s["judgments"] if e["import_batch"] is not None]
        tally.imported["judgments"] += len(from_imports)
        tally.imported_raters.update(from_imports)
        tally.imported["aggregates"] += len(s["aggregates"])
        tally.imported["aggregate_raters"] += sum(a["n"] for a in s["aggregates"])
    head["scenarios"] = out
    return head
