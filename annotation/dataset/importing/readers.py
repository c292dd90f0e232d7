"""Reading the data file: its format (``detect_format``), then CSV records or JSON Lines, one
``Row`` each (cleaned by ``rows``), with the ratings and pre-aggregated scores they carry.
The file is read as a stream. The input formats: docs/dataset-import.md."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from ..format import CSV_COLUMNS as EXPORT_CSV_COLUMNS
from ..format import ExportFormatError, check_record
from .errors import FileError, row_error, shown
from .rows import Row, aggregate_in, blank, context_in, rating_in, scenario_in

FORMATS = ("csv", "jsonl")
CSV_COLUMNS = (
    "external_id",
    "image_path",
    "setting",
    "scenario_text",
    "text_only_label",
    "canary_min_score",
    "canary_max_score",
    "image_origin",
    "image_unreliable",
    "source",
    "image_sha256",
    # one rating per row ...
    "rater_id",
    "score",
    "modality",
    "rated_at",
    # ... or one pre-aggregated score
    "mean",
    "raters",
    "rater_group",
)
CSV_REQUIRED = ("image_path", "setting", "scenario_text")
CSV_RATING = ("rater_id", "score", "modality", "rated_at")
CSV_AGGREGATE = ("mean", "raters", "rater_group")
CONTEXT_KEYS = ("external_id", "image_path", "setting", "source", "image_origin", "image_unreliable", "image_sha256", "scenarios")
SCENARIO_KEYS = ("text", "text_only_label", "is_canary", "canary_min_score", "canary_max_score", "judgments", "aggregates")
JUDGMENT_KEYS = ("annotator_id", "score", "modality", "created_at")
AGGREGATE_KEYS = ("rater_group", "n", "mean")
# Keys of a morale-export/1 line that are read past (derived figures, ids of the exporting database).
EXPORT_ONLY_CONTEXT_KEYS = ("format", "context_id", "split")
EXPORT_ONLY_SCENARIO_KEYS = ("scenario_id", "origin", "n", "mean", "sd", "majority_modality", "modality_votes")
EXPORT_ONLY_JUDGMENT_KEYS = (
    "judgment_id", "phase", "seconds_spent", "revises", "initial_score", "initial_modality", "model_score_shown",
    "import_batch",
)
EXPORT_ONLY_AGGREGATE_KEYS = ("import_batch",)
# In a line that is not an export line these say something the import would not use.
_DERIVED = ("n", "mean")


def detect_format(name: str, head: bytes) -> str:
    suffix = Path(name).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if head.startswith(b"PAR1"):
        raise FileError("This is a Parquet file; import the JSONL dataset export (or a CSV) instead.", row=1)
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def file_sha256(handle) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    handle.seek(0)
    return digest.hexdigest()


def _decoded_lines(binary, numbers: list[int]) -> Iterator[str]:
    """The file's lines as text; a line that is not UTF-8 stops the import (row: the record)."""
    for index, raw in enumerate(binary):
        if index == 0 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FileError(f"The file is not UTF-8 text ({exc.reason} in this row).", row=numbers[0] + 1) from None


def csv_rows(binary) -> Iterator[Row]:
    numbers = [0]  # records read so far (a quoted cell may span lines)
    reader = csv.reader(_decoded_lines(binary, numbers))
    header = None
    try:
        for cells in reader:
            numbers[0] += 1
            number = numbers[0]
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = _csv_header(cells, number)
                continue
            errors: list[dict] = []
            if len(cells) > len(header) and any(c.strip() for c in cells[len(header):]):
                errors.append(row_error(number, None, f"The row has {len(cells)} cells; the header has {len(header)}."))
            values = dict(zip(header, cells))
            rated = any(not blank(values.get(c)) for c in CSV_RATING)
            aggregated = any(not blank(values.get(c)) for c in CSV_AGGREGATE)
            if rated and aggregated:
                errors.append(row_error(number, "mean", "A row carries one rating (rater_id, score) or one "
                                        "pre-aggregated score (mean, raters), not both."))
            context = context_in(values, errors=errors, number=number, may_refer=rated or aggregated)
            values["text"] = values.pop("scenario_text", None)
            scenario = scenario_in(values, where="", errors=errors, number=number)
            rating = rating_in(values, where="", errors=errors, number=number) if rated else None
            aggregate = aggregate_in(values, where="", errors=errors, number=number) if aggregated else None
            if scenario is not None:
                scenario.ratings = [rating] if rating else []
                scenario.aggregates = [aggregate] if aggregate else []
                scenario.defines = context is None or not context.refers_only
            yield Row(number, context, [scenario] if scenario else [], errors)
    except csv.Error as exc:
        raise FileError(f"The CSV cannot be read past this row ({exc}).", row=numbers[0] + 1) from None
    if header is None:
        raise FileError("The file is empty: no header row.", row=1)


def _csv_header(cells: list[str], number: int) -> list[str]:
    header = [c.strip().lower() for c in cells]
    if header and header[0] == EXPORT_CSV_COLUMNS[0]:
        raise FileError(
            "This is a MORALE CSV export (a spreadsheet view, not read back); import the JSONL export instead.",
            row=number,
        )
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if unknown:
        raise FileError(
            f"Unknown column(s) {', '.join(shown(c) for c in unknown)}; the columns are {', '.join(CSV_COLUMNS)}.",
            row=number, field=unknown[0],
        )
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise FileError(f"Column(s) {', '.join(repeated)} appear more than once.", row=number, field=repeated[0])
    missing = [c for c in CSV_REQUIRED if c not in header]
    # A file of ratings for contexts stored (or given on other rows) names each by external_id.
    refers = "external_id" in header and any(c in header for c in ("rater_id", "mean"))
    if "scenario_text" in missing or (missing and not refers):
        hint = (" (a file of ratings for contexts stored or given on other rows may leave out image_path and "
                "setting; it names each context by external_id)") if "scenario_text" not in missing else ""
        raise FileError(f"Required column(s) missing: {', '.join(missing)}{hint}.", row=number, field=missing[0])
    return header


def jsonl_rows(binary) -> Iterator[Row]:
    for number, raw in enumerate(binary, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise FileError(f"The line is not UTF-8 text ({exc.reason}).", row=number) from None
        except json.JSONDecodeError as exc:
            yield Row(number, None, [], [row_error(number, None, f"Not valid JSON ({exc.msg} at column {exc.colno}).")])
            continue
        yield _jsonl_row(record, number)


def _jsonl_row(record, number: int) -> Row:
    errors: list[dict] = []
    if not isinstance(record, dict):
        return Row(number, None, [], [row_error(number, None, f"Expected a JSON object, got {type(record).__name__}.")])
    if "format" in record:
        try:
            check_record(record, f"line {number}")  # the export's own reader: one format, one check
        except ExportFormatError as exc:
            return Row(number, None, [], [row_error(number, "format", str(exc))])
    unknown = sorted(set(record) - set(CONTEXT_KEYS) - set(EXPORT_ONLY_CONTEXT_KEYS))
    for key in unknown:
        errors.append(row_error(number, key, f"Unknown key {shown(key)}; known keys: {', '.join(CONTEXT_KEYS)}."))
    raw_scenarios = record.get("scenarios")
    if not isinstance(raw_scenarios, list):
        errors.append(row_error(number, "scenarios", "scenarios must be a list of objects ([] for none)."))
        raw_scenarios = []
    rated = any(isinstance(raw, dict) and (raw.get("judgments") or raw.get("aggregates")) for raw in raw_scenarios)
    context = context_in(record, errors=errors, number=number, may_refer=rated)
    scenarios = []
    for i, raw in enumerate(raw_scenarios):
        where = f"scenarios[{i}]."
        if not isinstance(raw, dict):
            errors.append(row_error(number, f"scenarios[{i}]", "Each scenario must be a JSON object."))
            continue
        for key in sorted(set(raw) - set(SCENARIO_KEYS) - set(EXPORT_ONLY_SCENARIO_KEYS)):
            errors.append(row_error(number, f"{where}{key}", f"Unknown key {shown(key)}; known keys: {', '.join(SCENARIO_KEYS)}."))
        if "format" not in record:
            for key in (k for k in _DERIVED if k in raw):
                errors.append(row_error(number, f"{where}{key}", f"{key} is read only in a morale-export/1 line, "
                                        "where it is derived from the judgments; a pre-aggregated score goes in "
                                        '"aggregates": [{"mean": ..., "n": ...}].'))
        scenario = scenario_in(raw, where=where, errors=errors, number=number)
        ratings = _jsonl_list(raw.get("judgments"), f"{where}judgments", JUDGMENT_KEYS, EXPORT_ONLY_JUDGMENT_KEYS,
                              rating_in, errors, number)
        aggregates = _jsonl_list(raw.get("aggregates"), f"{where}aggregates", AGGREGATE_KEYS,
                                 EXPORT_ONLY_AGGREGATE_KEYS, aggregate_in, errors, number)
        if scenario is not None:
            scenario.ratings, scenario.aggregates = ratings, aggregates
            scenario.defines = context is None or not context.refers_only
            scenarios.append(scenario)
    return Row(number, context, scenarios, errors)


def _jsonl_list(raw, where: str, keys: tuple, ignored: tuple, parse, errors: list[dict], number: int) -> list:
    """The ratings (``judgments``) or aggregates of one JSONL scenario, parsed by ``parse``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.append(row_error(number, where, f"{where.rpartition('.')[2]} must be a list of objects."))
        return []
    parsed = []
    for k, item in enumerate(raw):
        at = f"{where}[{k}]"
        if not isinstance(item, dict):
            errors.append(row_error(number, at, "Each entry must be a JSON object."))
            continue
        for key in sorted(set(item) - set(keys) - set(ignored)):
            errors.append(row_error(number, f"{at}.{key}", f"Unknown key {shown(key)}; known keys: {', '.join(keys)}."))
        value = parse(item, where=f"{at}.", errors=errors, number=number)
        if value is not None:
            parsed.append(value)
    return parsed
