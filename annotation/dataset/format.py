"""The ``morale-export/1`` format: its constants, split and aggregates, the Parquet schema,
the record check and ``iter_export`` (reading a file back). No Django, no ORM: a notebook
or a training job reads exports with this module alone. The specification: docs/dataset-export.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

FORMAT = "morale-export/1"
FORMATS = ("jsonl", "csv", "parquet")
SOURCES = ("reconfirmed", "initial")
SPLITS = ("train", "test")
MODALITIES = ("text", "image", "both")
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
    "import_batch",
)
# One imported pre-aggregated score of a scenario ("aggregates" of a scenario record).
AGGREGATE_KEYS = ("import_batch", "rater_group", "n", "mean")


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
    # a row of an imported aggregate (its judgment cells are empty); import_batch is above
    "aggregate_rater_group",
    "aggregate_n",
    "aggregate_mean",
)


class ExportFormatError(ValueError):
    """A file that is not a readable MORALE export of a version this code understands."""


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


def aggregate(scores: list[int], modalities: list[str | None], aggregates: list[dict] = ()) -> dict:
    """n, mean, sample sd (ddof=1; None for fewer than two scores), majority modality (ties:
    "both"; None when no score has a known modality), votes.

    ``aggregates``: imported pre-aggregated scores (``{"n", "mean", ...}``) of raters whose
    single scores are unknown: they count in ``n`` and ``mean`` (weighted by their ``n``),
    not in ``sd`` or the votes. A modality of None (unknown) counts in no vote.
    """
    n = len(scores) + sum(a["n"] for a in aggregates)
    if n == 0:
        raise ValueError("no judgments to aggregate")
    mean = (sum(scores) + sum(a["mean"] * a["n"] for a in aggregates)) / n
    known = len(scores)
    plain = sum(scores) / known if known else None
    sd = math.sqrt(sum((s - plain) ** 2 for s in scores) / (known - 1)) if known > 1 else None
    votes = dict.fromkeys(MODALITIES, 0)
    for m in modalities:
        if m is not None:
            votes[m] += 1
    top = max(votes.values())
    leaders = [m for m in MODALITIES if votes[m] == top]
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "majority_modality": None if top == 0 else leaders[0] if len(leaders) == 1 else "both",
        "modality_votes": votes,
    }


# --- the Parquet schema ----------------------------------------------------------------------
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
            ("import_batch", pa.int64()),
        ]
    )
    imported = pa.struct(
        [("import_batch", pa.int64()), ("rater_group", pa.string()), ("n", pa.int64()), ("mean", pa.float64())]
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
            ("aggregates", pa.list_(imported)),
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


def check_record(record, where: str) -> dict:
    """``record`` if it is a complete ``morale-export/1`` context record; else ExportFormatError
    naming ``where`` (the import checks export lines with this too: one format, one check)."""
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
            yield check_record(record, where)


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
            yield check_record(record, f"{path.name}: row {number}")

