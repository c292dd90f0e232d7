"""Reading the data file: its format (``detect_format``), then CSV records or JSON Lines, one
``Row`` each (cleaned by ``rows``). The file is read as a stream. The input formats:
docs/dataset-import.md."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from ..format import CSV_COLUMNS as EXPORT_CSV_COLUMNS
from ..format import ExportFormatError, check_record
from .errors import FileError, row_error, shown
from .rows import Row, context_in, scenario_in

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
)
CSV_REQUIRED = ("image_path", "setting", "scenario_text")
CONTEXT_KEYS = ("external_id", "image_path", "setting", "source", "image_origin", "image_unreliable", "image_sha256", "scenarios")
SCENARIO_KEYS = ("text", "text_only_label", "is_canary", "canary_min_score", "canary_max_score")
# Keys of a morale-export/1 line that are read past (aggregates, judgments, ids of the exporting database).
EXPORT_ONLY_CONTEXT_KEYS = ("format", "context_id", "split")
EXPORT_ONLY_SCENARIO_KEYS = ("scenario_id", "origin", "n", "mean", "sd", "majority_modality", "modality_votes", "judgments")


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
            context = context_in(values, errors=errors, number=number)
            values["text"] = values.pop("scenario_text", None)
            scenario = scenario_in(values, where="", errors=errors, number=number)
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
    if missing:
        raise FileError(f"Required column(s) missing: {', '.join(missing)}.", row=number, field=missing[0])
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
    context = context_in(record, errors=errors, number=number)
    scenarios = []
    raw_scenarios = record.get("scenarios")
    if not isinstance(raw_scenarios, list):
        errors.append(row_error(number, "scenarios", "scenarios must be a list of objects ([] for none)."))
        raw_scenarios = []
    for i, raw in enumerate(raw_scenarios):
        where = f"scenarios[{i}]."
        if not isinstance(raw, dict):
            errors.append(row_error(number, f"scenarios[{i}]", "Each scenario must be a JSON object."))
            continue
        for key in sorted(set(raw) - set(SCENARIO_KEYS) - set(EXPORT_ONLY_SCENARIO_KEYS)):
            errors.append(row_error(number, f"{where}{key}", f"Unknown key {shown(key)}; known keys: {', '.join(SCENARIO_KEYS)}."))
        scenario = scenario_in(raw, where=where, errors=errors, number=number)
        if scenario is not None:
            scenarios.append(scenario)
    return Row(number, context, scenarios, errors)
