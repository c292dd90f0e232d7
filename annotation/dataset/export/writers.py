"""The writers of the three export formats (JSONL, CSV, Parquet) and the sink that hashes
and counts every byte on its way to the file. The formats: docs/dataset-export.md."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import asdict

from ..format import CSV_COLUMNS, FORMAT, JUDGMENT_KEYS, parquet_schema

CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class HashingSink:
    """A write-only binary file that hashes (sha256) and counts every byte on its way out."""

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        if not isinstance(data, bytes):
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


class JsonlWriter:
    """One line per record, compact, UTF-8 as it is (the byte layout the tests compare).

    One encoder for every line (``json.dumps`` with options builds a new one per call), and
    the lines go to the sink in blocks of about ``BLOCK_BYTES`` (one hash update and one
    file write per block, not per line): memory stays at one block whatever the size."""

    BLOCK_BYTES = 1 << 20

    def __init__(self, sink, options):
        self.sink = sink
        self.encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
        self.lines: list[str] = []
        self.pending = 0

    def write(self, record: dict) -> None:
        line = self.encode(record)
        self.lines.append(line)
        self.pending += len(line)
        if self.pending >= self.BLOCK_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self.lines:
            self.lines.append("")  # the last line's newline
            self.sink.write("\n".join(self.lines).encode("utf-8"))
            self.lines, self.pending = [], 0

    def close(self) -> None:
        self._flush()


def csv_cell(value) -> str:
    """One CSV cell: null empty, booleans true/false, text neutralised against formulas."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value if value.startswith(CSV_FORMULA_PREFIXES) else value
    return str(value)


_NO_AGGREGATE = (None, None, None)
_NO_JUDGMENT = tuple(None for k in JUDGMENT_KEYS if k != "import_batch")


def csv_rows(record: dict) -> Iterator[list[str]]:
    """The CSV rows (cells as text) of one JSONL record: one per judgment, then one per
    imported aggregate (its judgment cells empty but ``import_batch``)."""
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
            yield [csv_cell(v) for v in (*ctx, *scn, *(j[k] for k in JUDGMENT_KEYS), *_NO_AGGREGATE)]
        for a in s.get("aggregates", ()):
            cells = (*_NO_JUDGMENT, a["import_batch"], a["rater_group"], a["n"], a["mean"])
            yield [csv_cell(v) for v in (*ctx, *scn, *cells)]


class CsvWriter:
    """A header row, then one row per exported judgment or imported aggregate (``csv_rows``)."""

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


class ParquetWriter:
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


WRITERS = {"jsonl": JsonlWriter, "csv": CsvWriter, "parquet": ParquetWriter}
