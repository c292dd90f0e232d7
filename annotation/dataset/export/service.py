"""Dataset export: the one implementation of the MORALE export format, writer and reader.

Training reads these files, never the live tables, so every run is reproducible from
its export file (DESIGN.md). ``dataset_export_create`` writes one file and its
``DatasetExport`` record; ``iter_export`` reads a file back and checks its version.

Format ``morale-export/1``
==========================

**JSON Lines** (``.jsonl``, UTF-8, ``\\n`` line ends): one JSON object per context (a
*list* in ListMLE terms). There is no header line: every line starts with the key
``"format": "morale-export/1"``, so any line on its own (after ``grep``, ``split``,
``shuf``) says what it is, and the file loads with ``datasets.load_dataset("json")``.
An export with no data is an empty file. Lines are in context-id order; a line::

    {"format": "morale-export/1", "context_id": 7, "split": "train",
     "setting": "child crossing a street",
     "image_path": "contexts/2026/11/street.png",      # relative to MEDIA_ROOT
     "image_sha256": "9f2c...", "image_origin": "real", "image_unreliable": false,
     "scenarios": [
       {"scenario_id": 31, "text": "holding the child's hand", "origin": "seed",
        "text_only_label": 1, "is_canary": false,
        "n": 3, "mean": 4.333333333333333, "sd": 0.5773502691896257,
        "majority_modality": "image", "modality_votes": {"text": 0, "image": 2, "both": 1},
        "judgments": [
          {"judgment_id": 90, "annotator_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
           "score": 4, "modality": "image", "phase": "initial", "seconds_spent": 21.5,
           "created_at": "2026-11-22T15:16:45.123456+00:00",
           "revises": null, "initial_score": null, "initial_modality": null,
           "model_score_shown": null},
          {"judgment_id": 97, ..., "phase": "reconfirmed", "revises": 91,
           "initial_score": 2, "initial_modality": "text", "model_score_shown": 4.6}, ...]},
       ...]}

Fields:

- ``split``: ``"train"`` or ``"test"``, by context (see ``split_for``).
- ``annotator_id``: ``Annotator.public_id`` (a random UUID). Usernames, user ids and
  annotator row ids never appear in a file.
- ``judgments``: the judgments the aggregates were computed from, one per annotator
  (ordered by the annotator's first judgment id). ``phase`` says which answer it is; for a
  ``reconfirmed`` one, ``revises`` is the id of the initial judgment it keeps or revises,
  ``initial_score`` / ``initial_modality`` what that initial judgment said, and
  ``model_score_shown`` the model score the annotator saw at the grounding check (1-5,
  null if none was available). All four are null for an initial judgment (the model score
  is not shown before the first answer). ``seconds_spent`` may be null.
- Aggregates over ``judgments``: ``n``; ``mean``; ``sd`` the *sample* standard deviation
  (ddof=1), **null when n = 1** (undefined for one value; such a scenario is never dropped
  by the sd filter); ``modality_votes`` the count per modality (all three keys always
  present); ``majority_modality`` the modality with the most votes, and **on a tie
  "both"** (annotators split between grounds means no single modality drove the
  judgment: text vs image, text vs both, image vs both and three-way ties all give
  "both"). Floats are written at full precision.

**CSV** (``.csv``, UTF-8, RFC 4180, header row): the same data flattened, one row per
exported judgment, columns ``CSV_COLUMNS`` (context and scenario fields repeated on each
row; the scenario's aggregates as ``scenario_n``, ``scenario_mean``, ...; the votes as
``votes_text``/``votes_image``/``votes_both``). Booleans are ``true``/``false``, null is an
empty cell. Against formula injection, a *text* cell starting with ``=``, ``+``, ``-``,
``@``, tab or carriage return gets a leading single quote (numbers such as a
``text_only_label`` of -1 are written as numbers and left alone). A spreadsheet view:
``iter_export`` does not read it back (read the JSONL or Parquet export).

**Parquet** (``.parquet``): the JSON Lines records as rows, one row group per chunk of
contexts, with the nested schema ``parquet_schema()`` (scenarios a list of structs, each
with a list of judgment structs), so ``datasets.load_dataset("parquet", ...)`` gives one
list per row. The file's key-value metadata holds ``morale_export`` (format and options).
``iter_export`` yields the very same dicts from a Parquet file as from the JSONL one.

What is exported (each choice recorded in ``DatasetExport.options``; defaults from the
``MORALE_EXPORT_*`` settings, overridable per export)
================================================================================

Applied per scenario in this order; every judgment row read is counted exactly once, in
``counts["judgments"]`` or one of the buckets below (``counts["dropped"]`` and
``counts["source"]``), and likewise every scenario and context read:

1. **Canaries** (``include_canaries``, default False). Canary scenarios are attention
   checks with a known answer, not training items: left out with all their judgments
   (``canary_scenarios``, ``canary_judgments``). When included, they appear with
   ``"is_canary": true``.
2. **Screened-out annotators** (``include_screened``, default False): every judgment of an
   annotator whose status is ``screened_out`` *now* is removed (``screened_judgments``).
   Paused annotators are kept. Scenarios they wrote are kept (others rated them).
3. **Failed canaries** (always): when any judgment of an annotator on a canary failed its
   range (``canary_passed`` false), initial or reconfirmed, that annotator's judgments of
   that canary are removed (``failed_canary_judgments``). Annotators are not excluded
   here for a low canary pass rate: that is quality control's job, which screens them out
   (then step 2 removes all their judgments).
4. **Source** (``source``, default ``"reconfirmed"``): one judgment per annotator x
   scenario. ``"reconfirmed"``: the reconfirmed judgment where the annotator answered a
   grounding check, else the initial one; the replaced initial judgments are counted in
   ``counts["source"]["initial_replaced_by_reconfirmation"]``. ``"initial"``: first
   answers only (``reconfirmed_unused``). The default follows the paper, which stores
   "the corrected scalar rating and grounding label" after the check and reports that
   training with or without them differs by < 0.01 NDCG@5; a reconfirmation is the
   annotator's considered answer to an explicit grounding question. ``"initial"`` gives
   labels that never saw a model score (no anchoring), e.g. for evaluating a model
   against untouched human judgments.
5. Scenarios left with no judgment are dropped (``scenarios_without_judgments``).
6. **High variance** (``max_sd``, default 1.2, paper section 3.3): scenarios whose sample
   sd is strictly above it are dropped with their judgments (``high_sd_scenarios``,
   ``high_sd_judgments``). ``max_sd=None`` turns the filter off.
7. Contexts with no scenario left are dropped (``contexts_without_scenarios``).

Retired scenarios and inactive contexts are exported: retiring stops new work, it does
not withdraw the judgments already given.

Consistency and memory: the export reads the rows that existed when it started (the
largest context, scenario and judgment ids then, recorded in ``options["high_water"]``;
judgments are append-only, so later ones are simply not read), in chunks of
``chunk_size`` contexts by id (keyset pagination: no long transaction, no open cursor,
nothing that holds SQLite's write lock), each chunk's scenarios and judgments in one query
each (judgments by scenario id, an index lookup; plus one for the public ids of
annotators not seen before), writing and hashing as it goes. Memory is bounded by the
chunk size and the number of distinct annotators (a public id and a status each, and the
annotator counts), not by the number of judgments; time grows linearly with the data.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import secrets
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.db import connection
from django.db.models import Max, Q
from django.utils import timezone

from annotation.models import Annotator, Context, DatasetExport, Judgment, Scenario

logger = logging.getLogger("annotation.exports")  # the name log filters know

FORMAT = "morale-export/1"
FORMATS = ("jsonl", "csv", "parquet")
SOURCES = ("reconfirmed", "initial")
SPLITS = ("train", "test")
MODALITIES = ("text", "image", "both")
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
CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
JUDGMENT_KEYS = (
    "judgment_id",
    "annotator_id",
    "score",
    "modality",
    "phase",
    "seconds_spent",
    "created_at",
    "revises",
    "initial_score",
    "initial_modality",
    "model_score_shown",
)


class ExportFormatError(ValueError):
    """A file that is not a readable MORALE export of a version this code understands."""


class ExportFailed(Exception):
    """An export could not be written; ``export`` is its record, marked failed."""

    def __init__(self, export: DatasetExport):
        super().__init__(f"export #{export.pk} failed: {export.error}")
        self.export = export


# --- options ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportOptions:
    """What an export includes; defaults come from the ``MORALE_EXPORT_*`` settings."""

    source: str
    max_sd: float | None
    include_screened: bool
    include_canaries: bool
    split_seed: str
    test_fraction: float
    chunk_size: int
    # Only these contexts (e.g. the admin's "export selected contexts"); None: all.
    context_ids: tuple[int, ...] | None = None

    @classmethod
    def from_settings(cls, **overrides) -> ExportOptions:
        """Settings, with ``overrides`` (keyword names as the fields) taking precedence.

        Raises TypeError for an unknown name, ValueError for a bad value.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown export option(s): {', '.join(unknown)} (known: {', '.join(sorted(names))})")
        values = {
            "source": settings.MORALE_EXPORT_SOURCE,
            "max_sd": settings.MORALE_EXPORT_MAX_SD,
            "include_screened": settings.MORALE_EXPORT_INCLUDE_SCREENED,
            "include_canaries": settings.MORALE_EXPORT_INCLUDE_CANARIES,
            "split_seed": settings.MORALE_EXPORT_SPLIT_SEED,
            "test_fraction": settings.MORALE_EXPORT_TEST_FRACTION,
            "chunk_size": settings.MORALE_EXPORT_CHUNK_SIZE,
            "context_ids": None,
        }
        values.update(overrides)
        if isinstance(values["context_ids"], (list, set, frozenset)):
            values["context_ids"] = tuple(sorted(values["context_ids"]))
        options = cls(**values)
        options.check()
        return options

    def check(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {self.source!r}")
        if self.max_sd is not None and (
            isinstance(self.max_sd, bool)
            or not isinstance(self.max_sd, (int, float))
            or not 0 <= self.max_sd < math.inf  # NaN and infinity are not JSON: the record stores options
        ):
            raise ValueError(f"max_sd must be a number >= 0 or None (no sd filter), not {self.max_sd!r}")
        if isinstance(self.test_fraction, bool) or not isinstance(self.test_fraction, (int, float)) or not (
            0 <= self.test_fraction <= 1
        ):
            raise ValueError(f"test_fraction must be between 0 and 1, not {self.test_fraction!r}")
        if not isinstance(self.chunk_size, int) or isinstance(self.chunk_size, bool) or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive whole number, not {self.chunk_size!r}")
        for name in ("include_screened", "include_canaries"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if not isinstance(self.split_seed, str):
            raise ValueError(f"split_seed must be text, not {self.split_seed!r}")
        if self.context_ids is not None and (
            not isinstance(self.context_ids, tuple)
            or not self.context_ids
            or any(isinstance(i, bool) or not isinstance(i, int) or i < 1 for i in self.context_ids)
        ):
            raise ValueError("context_ids must be a non-empty list of context ids, or None for all contexts")


# --- split and aggregates (pure functions) ---------------------------------------------------
def split_for(context_id: int, *, seed: str, test_fraction: float) -> str:
    """``"test"`` or ``"train"`` for a context, from ``sha256(f"{seed}:{context_id}")``.

    The first 8 bytes of the digest, read as a number in [0, 1), are compared with
    ``test_fraction``: the answer depends on the context alone, so a context keeps its
    split however much data is added, and raising the fraction only moves contexts from
    train to test.
    """
    digest = hashlib.sha256(f"{seed}:{context_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2.0**64 < test_fraction else "train"


def aggregate(scores: list[int], modalities: list[str]) -> dict:
    """n, mean, sample sd (ddof=1; None for n=1), majority modality (ties: "both"), votes."""
    n = len(scores)
    if n == 0:
        raise ValueError("no judgments to aggregate")
    mean = sum(scores) / n
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1)) if n > 1 else None
    votes = dict.fromkeys(MODALITIES, 0)
    for m in modalities:
        votes[m] += 1
    top = max(votes.values())
    leaders = [m for m in MODALITIES if votes[m] == top]
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "majority_modality": leaders[0] if len(leaders) == 1 else "both",
        "modality_votes": votes,
    }


# --- reading the database, chunk by chunk ------------------------------------------------------
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


class _Tally:
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


def _scenario_judgments(rows: list, *, is_canary: bool, options: ExportOptions, tally: _Tally, annotators) -> list[dict]:
    """Filters 2-4 of the module docstring on one scenario's judgment rows (id order)."""
    if not options.include_screened:
        kept = [r for r in rows if not annotators[r[_J_ANN]][1]]
        tally.dropped["screened_judgments"] += len(rows) - len(kept)
        rows = kept
    pairs: dict[int, list] = {}  # annotator -> [initial row, reconfirmed row]
    for r in rows:
        pair = pairs.setdefault(r[_J_ANN], [None, None])
        pair[1 if r[_J_PHASE] == _RECONFIRMED else 0] = r
    entries = []
    for initial, reconfirmed in pairs.values():  # dicts keep insertion order: first judgment id
        if is_canary and any(r is not None and r[_J_CANARY] is False for r in (initial, reconfirmed)):
            tally.dropped["failed_canary_judgments"] += (initial is not None) + (reconfirmed is not None)
            continue
        if options.source == "reconfirmed" and reconfirmed is not None:
            if initial is not None:
                tally.source["initial_replaced_by_reconfirmation"] += 1
            entries.append(_judgment_entry(reconfirmed, initial, annotators[reconfirmed[_J_ANN]][0]))
        else:
            if reconfirmed is not None:
                tally.source["reconfirmed_unused"] += 1
            if initial is not None:
                entries.append(_judgment_entry(initial, None, annotators[initial[_J_ANN]][0]))
    return entries


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


def iter_records(options: ExportOptions, *, marks: dict | None = None, tally: _Tally | None = None) -> Iterator[dict]:
    """The export's records (one dict per context, the JSONL line), streamed in chunks.

    Reads contexts by id up to ``marks`` (``high_water_marks()`` if not given), each chunk
    of ``options.chunk_size`` contexts with one query for their scenarios, one for their
    judgments (one per 989 scenarios on SQLite, whose IN lists are limited) and, when new
    annotators appear, one for their public ids and status.
    """
    marks = marks or high_water_marks()
    tally = tally if tally is not None else _Tally()
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
        judgments_by_scenario = defaultdict(list)
        # By the chunk's scenario ids, not by a join on the context range: PostgreSQL would
        # answer that join with a scan of the whole judgment table per chunk (quadratic).
        scenario_ids = sorted(s[0] for rows in scenarios_by_context.values() for s in rows)
        for start in range(0, len(scenario_ids), batch):
            for j in (
                Judgment.objects.filter(
                    scenario_id__in=scenario_ids[start : start + batch], pk__lte=marks["judgment_id"]
                )
                .order_by("scenario_id", "pk")
                .values_list(*_JUDGMENT_COLUMNS)
            ):
                judgments_by_scenario[j[_J_SCN]].append(j)
        annotators = annotator_cache.load(j[_J_ANN] for rows in judgments_by_scenario.values() for j in rows)
        for c_id, image, image_sha256, setting, image_origin, image_unreliable in contexts:
            record = _context_record(
                c_id,
                scenarios_by_context.pop(c_id, []),
                judgments_by_scenario,
                options=options,
                tally=tally,
                annotators=annotators,
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


def _context_record(c_id, scenarios, judgments_by_scenario, *, options, tally, annotators, head) -> dict | None:
    tally.read["contexts"] += 1
    out = []
    for s_id, _, text, origin, text_only_label, is_canary in scenarios:
        tally.read["scenarios"] += 1
        rows = judgments_by_scenario.pop(s_id, [])
        tally.read["judgments"] += len(rows)
        if is_canary and not options.include_canaries:
            tally.dropped["canary_scenarios"] += 1
            tally.dropped["canary_judgments"] += len(rows)
            continue
        entries = _scenario_judgments(rows, is_canary=is_canary, options=options, tally=tally, annotators=annotators)
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


# --- writers ------------------------------------------------------------------------------------
class _HashingSink:
    """A write-only binary file that hashes (sha256) and counts every byte on its way out."""

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        data = bytes(data)
        self.sha256.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def close(self) -> None:  # the caller closes the underlying file
        self.closed = True


class _JsonlWriter:
    def __init__(self, sink, options):
        self.sink = sink

    def write(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        self.sink.write(line.encode("utf-8") + b"\n")

    def close(self) -> None:
        pass


CSV_COLUMNS = (
    "format",
    "context_id",
    "split",
    "setting",
    "image_path",
    "image_sha256",
    "image_origin",
    "image_unreliable",
    "scenario_id",
    "scenario_text",
    "scenario_origin",
    "text_only_label",
    "is_canary",
    "scenario_n",
    "scenario_mean",
    "scenario_sd",
    "scenario_majority_modality",
    "votes_text",
    "votes_image",
    "votes_both",
    *JUDGMENT_KEYS,
)


def csv_cell(value) -> str:
    """One CSV cell: null empty, booleans true/false, text neutralised against formulas."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value if value.startswith(CSV_FORMULA_PREFIXES) else value
    return str(value)


def csv_rows(record: dict) -> Iterator[list[str]]:
    """The CSV rows (cells as text) of one JSONL record: one per judgment."""
    ctx = [
        record["format"],
        record["context_id"],
        record["split"],
        record["setting"],
        record["image_path"],
        record["image_sha256"],
        record["image_origin"],
        record["image_unreliable"],
    ]
    for s in record["scenarios"]:
        votes = s["modality_votes"]
        scn = [
            s["scenario_id"],
            s["text"],
            s["origin"],
            s["text_only_label"],
            s["is_canary"],
            s["n"],
            s["mean"],
            s["sd"],
            s["majority_modality"],
            votes["text"],
            votes["image"],
            votes["both"],
        ]
        for j in s["judgments"]:
            yield [csv_cell(v) for v in (*ctx, *scn, *(j[k] for k in JUDGMENT_KEYS))]


class _CsvWriter:
    def __init__(self, sink, options):
        self.sink = sink
        self.buffer = io.StringIO(newline="")
        self.writer = csv.writer(self.buffer)  # QUOTE_MINIMAL, \r\n: RFC 4180
        self.writer.writerow(CSV_COLUMNS)
        self._flush()

    def _flush(self) -> None:
        self.sink.write(self.buffer.getvalue().encode("utf-8"))
        self.buffer.seek(0)
        self.buffer.truncate()

    def write(self, record: dict) -> None:
        self.writer.writerows(csv_rows(record))
        self._flush()

    def close(self) -> None:
        pass


def parquet_schema():
    """The Arrow schema of the Parquet export (pyarrow is imported only when needed)."""
    import pyarrow as pa

    judgment = pa.struct(
        [
            ("judgment_id", pa.int64()),
            ("annotator_id", pa.string()),
            ("score", pa.int64()),
            ("modality", pa.string()),
            ("phase", pa.string()),
            ("seconds_spent", pa.float64()),
            ("created_at", pa.string()),
            ("revises", pa.int64()),
            ("initial_score", pa.int64()),
            ("initial_modality", pa.string()),
            ("model_score_shown", pa.float64()),
        ]
    )
    scenario = pa.struct(
        [
            ("scenario_id", pa.int64()),
            ("text", pa.string()),
            ("origin", pa.string()),
            ("text_only_label", pa.int64()),
            ("is_canary", pa.bool_()),
            ("n", pa.int64()),
            ("mean", pa.float64()),
            ("sd", pa.float64()),
            ("majority_modality", pa.string()),
            ("modality_votes", pa.struct([(m, pa.int64()) for m in MODALITIES])),
            ("judgments", pa.list_(judgment)),
        ]
    )
    return pa.schema(
        [
            ("format", pa.string()),
            ("context_id", pa.int64()),
            ("split", pa.string()),
            ("setting", pa.string()),
            ("image_path", pa.string()),
            ("image_sha256", pa.string()),
            ("image_origin", pa.string()),
            ("image_unreliable", pa.bool_()),
            ("scenarios", pa.list_(scenario)),
        ]
    )


class _ParquetWriter:
    """One row group per ``chunk_size`` contexts; the options go into the file metadata."""

    def __init__(self, sink, options):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        meta = {"format": FORMAT, "options": asdict(options)}
        self.schema = parquet_schema().with_metadata({"morale_export": json.dumps(meta)})
        self.writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), self.schema, compression="zstd")
        self.rows: list[dict] = []
        self.group = options.chunk_size

    def write(self, record: dict) -> None:
        self.rows.append(record)
        if len(self.rows) >= self.group:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            self.writer.write_table(self.pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self._flush()
        self.writer.close()


_WRITERS = {"jsonl": _JsonlWriter, "csv": _CsvWriter, "parquet": _ParquetWriter}


@dataclass(frozen=True)
class WriteResult:
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
    if fmt not in _WRITERS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    sink = _HashingSink(out)
    tally = _Tally()
    marks = marks or high_water_marks()
    writer = _WRITERS[fmt](sink, options)
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
    ``include_screened``, ``include_canaries``, ``split_seed``, ``test_fraction``,
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
    from django.db import transaction

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


# --- the reader --------------------------------------------------------------------------------
_REQUIRED_CONTEXT_KEYS = ("context_id", "split", "setting", "image_path", "image_sha256", "scenarios")
_REQUIRED_SCENARIO_KEYS = ("scenario_id", "text", "n", "mean", "sd", "majority_modality", "modality_votes", "judgments")
_REQUIRED_JUDGMENT_KEYS = ("judgment_id", "annotator_id", "score", "modality", "phase")


def _check_version(value, where: str) -> None:
    if value == FORMAT:
        return
    if isinstance(value, str) and value.startswith("morale-export/"):
        raise ExportFormatError(
            f"{where}: format {value!r} is not supported: this reader reads {FORMAT!r} only "
            "(the file was written by another version of MORALE)"
        )
    raise ExportFormatError(f"{where}: unknown format {value!r}; expected {FORMAT!r}")


def _check_record(record, where: str) -> dict:
    if not isinstance(record, dict):
        raise ExportFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "format" not in record:
        raise ExportFormatError(f'{where}: no "format" key: not a MORALE export line (expected {FORMAT!r})')
    _check_version(record["format"], where)
    missing = [k for k in _REQUIRED_CONTEXT_KEYS if k not in record]
    if missing:
        raise ExportFormatError(f"{where}: missing key(s) {', '.join(missing)}")
    if not isinstance(record["context_id"], int) or record["split"] not in SPLITS:
        raise ExportFormatError(f"{where}: context_id must be an integer and split one of {', '.join(SPLITS)}")
    if not isinstance(record["scenarios"], list):
        raise ExportFormatError(f"{where}: scenarios must be a list")
    for i, s in enumerate(record["scenarios"]):
        if not isinstance(s, dict) or any(k not in s for k in _REQUIRED_SCENARIO_KEYS):
            raise ExportFormatError(f"{where}: scenario {i} lacks one of {', '.join(_REQUIRED_SCENARIO_KEYS)}")
        if not isinstance(s["judgments"], list) or any(
            not isinstance(j, dict) or any(k not in j for k in _REQUIRED_JUDGMENT_KEYS) for j in s["judgments"]
        ):
            raise ExportFormatError(f"{where}: scenario {i} has a judgment without {', '.join(_REQUIRED_JUDGMENT_KEYS)}")
    return record


def iter_export(path: str | os.PathLike) -> Iterator[dict]:
    """The records of an export file (JSONL or Parquet), one dict per context, checked.

    The two formats give identical dicts. Raises ExportFormatError, naming the line (JSONL,
    counted from 1) or row (Parquet, from 1), for a version this code does not read, a line
    that is not JSON or lacks required keys; and for a CSV export (a spreadsheet view, not
    read back).
    """
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        yield from _iter_parquet(path)
    else:
        yield from _iter_jsonl(path)


def _iter_jsonl(path: Path) -> Iterator[dict]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{path.name}: line {number}"
            if number == 1 and raw.startswith(b"format,"):
                raise ExportFormatError(f"{where}: this is the CSV export; read the JSONL or Parquet export instead")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ExportFormatError(f"{where}: not UTF-8 ({exc.reason})") from None
            if not text.strip():
                raise ExportFormatError(f"{where}: empty line")
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ExportFormatError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            yield _check_record(record, where)


def _iter_parquet(path: Path) -> Iterator[dict]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:
        raise ExportFormatError(f"{path.name}: not a readable Parquet file ({exc})") from None
    meta = (parquet.schema_arrow.metadata or {}).get(b"morale_export")
    if meta is None:
        raise ExportFormatError(f"{path.name}: no morale_export metadata: not a MORALE export")
    try:
        declared = json.loads(meta).get("format")
    except (ValueError, AttributeError):
        raise ExportFormatError(f"{path.name}: unreadable morale_export metadata") from None
    _check_version(declared, f"{path.name}: file metadata")
    number = 0
    for batch in parquet.iter_batches(batch_size=500):
        for record in batch.to_pylist():
            number += 1
            yield _check_record(record, f"{path.name}: row {number}")

