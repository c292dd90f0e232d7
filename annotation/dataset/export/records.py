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
from django.db.models import Max, Q

from annotation.models import Annotator, Context, Judgment, Scenario

from ..format import FORMAT, SPLITS, aggregate, split_for
from ..selection import select_judgments
from .options import ExportOptions

DROPPED_KEYS = (
    "canary_scenarios",
    "canary_judgments",
    "screened_judgments",
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
)
# positions in a judgment row
_J_ID, _J_SCN, _J_ANN, _J_SCORE, _J_MOD, _J_PHASE, _J_REVISES, _J_MODEL, _J_CANARY, _J_SECS, _J_AT = range(
    len(_JUDGMENT_COLUMNS)
)
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
            "read": {k: self.read[k] for k in ("contexts", "scenarios", "judgments")},
        }


def high_water_marks() -> dict:
    """The largest context, scenario and judgment ids now: an export reads up to these."""
    return {
        "context_id": Context.objects.aggregate(m=Max("pk"))["m"] or 0,
        "scenario_id": Scenario.objects.aggregate(m=Max("pk"))["m"] or 0,
        "judgment_id": Judgment.objects.aggregate(m=Max("pk"))["m"] or 0,
    }


class _AnnotatorCache:
    """Annotator id -> (public id as text, screened out?), fetched once per annotator.

    Cheaper than joining the annotator into every judgment row (a UUID object per row);
    holds one small entry per distinct annotator, like the annotator counts do.
    """

    def __init__(self):
        self.known: dict[int, tuple[str, bool]] = {}

    def load(self, ids) -> dict[int, tuple[str, bool]]:
        missing = sorted(set(ids) - self.known.keys())
        for start in range(0, len(missing), 900):  # under any SQLite parameter limit
            for pk, public_id, status in Annotator.objects.filter(pk__in=missing[start : start + 900]).values_list(
                "pk", "public_id", "status"
            ):
                self.known[pk] = (str(public_id), status == _SCREENED)
        return self.known


def _iso(dt) -> str:
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
    }


class _ChunkJudgments:
    """A chunk's judgment rows (in scenario, id order), selected once for the whole chunk.

    The rows become numpy columns once and go through ``select_judgments`` in one call; the
    row counts go into ``tally``. ``entries(scenario_id)`` then gives a scenario's counted
    judgments as export entries, ordered by each annotator's first judgment id.
    """

    def __init__(self, rows: list[tuple], *, canary_ids: list[int], options: ExportOptions, annotators, tally: Tally):
        self.rows = rows
        self.annotators = annotators
        self.spans: dict[int, tuple[int, int]] = {}  # scenario id -> its slice of self.order
        tally.read["judgments"] += len(rows)
        if not rows:
            return
        columns = list(zip(*rows))
        annotator = np.array(columns[_J_ANN], dtype=np.int64)
        scenario = np.array(columns[_J_SCN], dtype=np.int64)
        present, inverse = np.unique(annotator, return_inverse=True)
        screened = np.array([annotators[a][1] for a in present.tolist()], dtype=bool)[inverse.reshape(-1)]
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
            source=options.source,
            include_screened=options.include_screened,
            include_canaries=options.include_canaries,
        )
        tally.dropped["canary_judgments"] += selection.canary_judgments
        tally.dropped["screened_judgments"] += selection.screened_judgments
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
        rows, annotators = self.rows, self.annotators
        return [
            _judgment_entry(rows[i], rows[j] if j >= 0 else None, annotators[rows[i][_J_ANN]][0])
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
    judgments (one per 989 scenarios on SQLite, whose IN lists are limited) and, when new
    annotators appear, one for their public ids and status.
    """
    marks = marks or high_water_marks()
    tally = tally if tally is not None else Tally()
    annotator_cache = _AnnotatorCache()
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
                .values_list(*_JUDGMENT_COLUMNS)
            )
        annotators = annotator_cache.load(j[_J_ANN] for j in judgments)
        chunk = _ChunkJudgments(
            judgments,
            canary_ids=[s[0] for rows in scenarios_by_context.values() for s in rows if s[5]],
            options=options,
            annotators=annotators,
            tally=tally,
        )
        for c_id, image, image_sha256, setting, image_origin, image_unreliable in contexts:
            record = _context_record(
                scenarios_by_context.pop(c_id, []),
                chunk,
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


def _context_record(scenarios, chunk: _ChunkJudgments, *, options, tally, head) -> dict | None:
    """Steps 5-7 of docs/dataset-export.md on one context; None when nothing is left."""
    tally.read["contexts"] += 1
    out = []
    for s_id, _, text, origin, text_only_label, is_canary in scenarios:
        tally.read["scenarios"] += 1
        if is_canary and not options.include_canaries:
            tally.dropped["canary_scenarios"] += 1
            continue
        entries = chunk.entries(s_id)
        if not entries:
            tally.dropped["scenarios_without_judgments"] += 1
            continue
        agg = aggregate([e["score"] for e in entries], [e["modality"] for e in entries])
        if options.max_sd is not None and agg["sd"] is not None and agg["sd"] > options.max_sd:
            tally.dropped["high_sd_scenarios"] += 1
            tally.dropped["high_sd_judgments"] += len(entries)
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
    head["scenarios"] = out
    return head
