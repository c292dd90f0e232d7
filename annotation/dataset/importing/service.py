"""Bulk import of contexts and scenarios: CSV or JSON Lines, images from a folder or a zip.

``import_contexts`` is the one implementation, used by ``manage.py import_contexts`` and
the admin's import page. It records every run in an ``ImportBatch``.

Inputs
======

**CSV** (UTF-8, a BOM is fine, RFC 4180, a header row): one row per scenario; a context's
fields are repeated on each of its rows. Columns (any order; unknown columns are refused):

- ``external_id``: your id for the context (optional; see *Matching*), at most 200 characters;
- ``image_path``: the image's path inside the images folder or zip (required);
- ``setting``: the context's setting text (required, at most 300 characters);
- ``scenario_text``: the scenario (required; whitespace is collapsed; at most
  ``MORALE_SCENARIO_MAX_CHARS``);
- ``text_only_label``: ``-1``, ``0``, ``1``/``+1`` or empty (Commonsense NormBank style);
- ``canary_min_score``, ``canary_max_score``: both (1-5, min <= max) for a canary, or neither;
- ``image_origin``: ``real`` (default) or ``generated``;
- ``image_unreliable``: ``true``/``false`` (also ``1``/``0``, ``yes``/``no``; default false);
- ``source``: where image and setting come from (at most 200 characters);
- ``image_sha256``: optional; when given, the image file must have this hash.

An empty cell means "not given". ``row`` in the errors is the record number with the
header as row 1 (the row number a spreadsheet shows).

**JSON Lines** (UTF-8, ``\\n``): one object per context with its scenarios, in the shape of
the dataset export ``morale-export/1`` (``annotation.exports``), so that an export
re-imports as it is. Keys: ``external_id``, ``image_path``, ``setting``, ``source``,
``image_origin``, ``image_unreliable``, ``image_sha256`` as above, and ``scenarios``: a list
of ``{"text": ..., "text_only_label": ..., "is_canary": ..., "canary_min_score": ...,
"canary_max_score": ...}``. A line that carries ``"format"`` must be a complete
``morale-export/1`` line (checked by the export's own reader); its aggregates and
judgments (``context_id``, ``split``, ``scenario_id``, ``origin``, ``n``, ``mean``, ``sd``,
``majority_modality``, ``modality_votes``, ``judgments``) are accepted and not imported:
judgments belong to annotators of the exporting database. Any other key is refused.
Blank lines are skipped. ``row`` is the line number; ``field`` a path such as
``scenarios[2].text_only_label`` (scenarios counted from 0).

**Images**: a folder or a zip file; ``image_path`` is relative to it (``/`` or ``\\``
separators). Paths that are absolute, contain ``..`` or (folder) resolve outside it are
refused; a zip holding any absolute, ``..`` or symlink entry is refused whole. Every image
goes through ``images.check_image_upload`` (non-images, SVG, truncated files, files over
``MORALE_MAX_IMAGE_BYTES``, decompression bombs are refused), each distinct file once, and
each distinct image (by sha256) is stored once, however many rows use it. An export's
``image_path`` is relative to ``MEDIA_ROOT``, so ``--images $MEDIA_ROOT`` re-imports it.

Matching (idempotence)
======================

A context is the stored one with the same ``external_id``; without an external id, the one
with the same image (sha256) and setting. A scenario is the stored one of that context
with the same text, ignoring case (``services.scenario_create`` refuses such duplicates
too). Matched rows are counted as already present and never changed: a matched context or
scenario whose stored fields differ from what the file gives (a different image or
setting for an external id, another ``text_only_label``, ...) is an error of that row.
Fields a row leaves out are not compared. The same scenario twice in one file is an error.

Validation and writing
======================

Everything is checked before anything is written: each row's fields (with the same
rules as ``services.context_create`` / ``scenario_create`` and the models' constraints),
each image, agreement between rows of one context, and agreement with the database. By
default a file with any error imports nothing: the batch is ``rejected`` with the errors
(``[{"row", "field", "message"}]``, the first ``MAX_STORED_ERRORS``; ``counts["errors"]``
has the total). ``allow_partial=True`` skips the rows with errors (a whole JSONL line,
with all its scenarios) and imports the others. A file that cannot be read to its end
(not UTF-8, broken CSV quoting, unknown columns, an unsafe zip) is rejected either way.

New images are stored first; then one transaction re-reads the matches (another import
may have run meanwhile; PostgreSQL: under an advisory lock, SQLite: its write lock),
inserts contexts and scenarios with ``bulk_create`` in batches, queues their scoring by the
current model (after commit) and marks the batch ``done``. Queries are per batch of rows,
never per row. Any unexpected error rolls the transaction back, removes the stored image
files, marks the batch ``failed`` with the reason and raises ``ImportFailed``.
Imported scenarios are ``seed`` scenarios (an export's ``origin`` is not kept: their
authors are annotators of the exporting database). An exported canary (``"is_canary":
true``; exports leave canaries out by default) matches a stored canary, but a new one needs
``canary_min_score`` / ``canary_max_score``, which exports do not carry.

Memory: the file is read as a stream, line by line, and held as parsed rows (all must be
checked before anything is written; the whole import peaks at about +70 MB at MM-SCALE
size, ``bench/import_bench.py``); images are read one at a time, and checked images are
kept until stored only while they total under ``KEEP_IMAGE_BYTES`` (the others are read
again when stored, and their hash re-checked).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import logging
import os
import posixpath
import re
import stat
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone

from modelloop import services as modelloop_services

from annotation.dataset import format as exports
from annotation.images import check_image_upload
from annotation.models import Context, ImportBatch, Scenario
from annotation.services import scenario_text_clean

logger = logging.getLogger("annotation.imports")  # the name bench/import_bench.py and log filters know

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
MAX_STORED_ERRORS = 1000
KEEP_IMAGE_BYTES = 128 * 2**20  # checked images kept in memory until stored (the rest is read again)
CONTEXT_BATCH = 500
SCENARIO_BATCH = 1000
_IN_CHUNK = 900  # values per IN (...): under SQLite's parameter limit
_PG_LOCK_KEY = 0x4D4F52414C45  # "MORALE": serialises imports on PostgreSQL
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ImportFailed(Exception):
    """An import stopped on an unexpected error; ``batch`` is its record, marked failed."""

    def __init__(self, batch: ImportBatch):
        super().__init__(f"import #{batch.pk} failed: {batch.errors[0]['message'] if batch.errors else ''}")
        self.batch = batch


class _FileError(Exception):
    """The file (or the images source) cannot be read: the whole import is rejected."""

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None):
        super().__init__(message)
        self.row, self.field, self.message = row, field, message


class _ChangedMeanwhile(Exception):
    """Another import changed matching rows between validation and writing."""


def _err(row: int | None, field_name: str | None, message: str) -> dict:
    return {"row": row, "field": field_name, "message": message}


def _shown(value, limit: int = 60) -> str:
    """A value quoted for an error message, shortened."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return json.dumps(text[:limit] + ("..." if len(text) > limit else ""), ensure_ascii=False)


# --- rows -------------------------------------------------------------------------------------
@dataclass(slots=True)
class ContextIn:
    """A context as one row gives it. ``None`` in an optional field: not given."""

    external_id: str
    image_path: str
    setting: str
    source: str | None = None
    image_origin: str | None = None
    image_unreliable: bool | None = None
    image_sha256: str | None = None  # declared in the file; checked against the image


@dataclass(slots=True)
class ScenarioIn:
    text: str
    where: str  # the field prefix in error messages: "" (CSV) or "scenarios[2]." (JSONL)
    text_only_label: int | None = None
    is_canary: bool | None = None
    canary_min_score: int | None = None
    canary_max_score: int | None = None

    def field(self, name: str) -> str:
        if not self.where:  # CSV
            return {"text": "scenario_text"}.get(name, name)
        return f"{self.where}{name}"


@dataclass(slots=True)
class Row:
    number: int
    context: ContextIn | None
    scenarios: list[ScenarioIn]
    errors: list[dict] = field(default_factory=list)
    sha256: str | None = None  # of its image, once checked


def _text(value, name: str, *, required: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValidationError(f"{name} is required and empty.")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValidationError(f"{name} must be text, not {_shown(value)}.")
    return str(value).strip()


def _whole(value, name: str, allowed: tuple[int, ...], shown_allowed: str) -> int | None:
    """A whole number from a CSV cell or JSON value; None for empty / null."""
    if value is None:
        return None
    number = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        cell = value.strip()
        if not cell:
            return None
        if re.fullmatch(r"[+-]?\d+", cell):
            number = int(cell)
    if number is None or number not in allowed:
        raise ValidationError(f"{name} must be {shown_allowed}, not {_shown(value)}.")
    return number


def _flag(value, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        cell = value.strip().lower()
        if not cell:
            return None
        if cell in _TRUE:
            return True
        if cell in _FALSE:
            return False
    raise ValidationError(f"{name} must be true or false, not {_shown(value)}.")


def clean_image_path(value) -> str:
    """The image path as a relative, normalised POSIX path; ValidationError if it is unsafe."""
    if isinstance(value, bool) or not isinstance(value, str) or not value.strip():
        raise ValidationError("image_path is required: the image's path inside the images folder or zip.")
    path = value.strip().replace("\\", "/")
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        raise ValidationError(f"image_path must be relative to the images folder or zip, not {_shown(value)}.")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValidationError(f"image_path must not contain '..' (it would leave the images folder): {_shown(value)}.")
    if not parts:
        raise ValidationError(f"image_path names no file: {_shown(value)}.")
    return "/".join(parts)


def _max_length(name: str) -> int:
    return Context._meta.get_field(name).max_length


def _context_in(values: dict, *, errors: list[dict], number: int) -> ContextIn | None:
    """Parse and check a row's context fields (``values``: raw cells or JSON values).

    The limits are the model's own (field lengths and choices, read from ``Context``); the
    checks run in Python, without a query per row.
    """
    before = len(errors)
    parsed = {}

    def take(name, parse, *args, **kwargs):
        try:
            parsed[name] = parse(values.get(name), *args, **kwargs)
        except ValidationError as exc:
            errors.append(_err(number, name, " ".join(exc.messages)))

    take("external_id", _text, "external_id")
    take("image_path", lambda v: clean_image_path(v))
    take("setting", _text, "setting", required=True)
    take("source", _text, "source")
    take("image_origin", _text, "image_origin")
    take("image_unreliable", _flag, "image_unreliable")
    take("image_sha256", _text, "image_sha256")
    for name in ("external_id", "setting", "source"):
        value = parsed.get(name)
        if value is not None and len(value) > _max_length(name):
            errors.append(_err(number, name, f"{name} must be at most {_max_length(name)} characters (it has {len(value)})."))
    origin = parsed.get("image_origin")
    if origin is not None and origin not in Context.ImageOrigin.values:
        errors.append(_err(number, "image_origin",
                           f"image_origin must be one of {', '.join(Context.ImageOrigin.values)}, not {_shown(origin)}."))
    sha = parsed.get("image_sha256")
    if sha is not None:
        parsed["image_sha256"] = sha = sha.lower()
        if not _SHA256.fullmatch(sha):
            errors.append(_err(number, "image_sha256", f"image_sha256 must be 64 hexadecimal digits, not {_shown(sha)}."))
    if len(errors) > before:
        return None
    parsed["external_id"] = parsed["external_id"] or ""
    return ContextIn(**parsed)


def _scenario_in(values: dict, *, where: str, errors: list[dict], number: int) -> ScenarioIn | None:
    scenario = ScenarioIn(text="", where=where)
    before = len(errors)
    try:
        scenario.text = scenario_text_clean(values.get("text"))
    except ValidationError as exc:
        errors.append(_err(number, scenario.field("text"), " ".join(exc.messages)))
    checks = (
        ("text_only_label", lambda v: _whole(v, "text_only_label", (-1, 0, 1), "-1, 0 or +1 (or empty)")),
        ("is_canary", lambda v: _flag(v, "is_canary")),
        ("canary_min_score", lambda v: _whole(v, "canary_min_score", (1, 2, 3, 4, 5), "a whole number from 1 to 5")),
        ("canary_max_score", lambda v: _whole(v, "canary_max_score", (1, 2, 3, 4, 5), "a whole number from 1 to 5")),
    )
    for name, parse in checks:
        try:
            setattr(scenario, name, parse(values.get(name)))
        except ValidationError as exc:
            errors.append(_err(number, scenario.field(name), " ".join(exc.messages)))
    low, high = scenario.canary_min_score, scenario.canary_max_score
    if len(errors) == before:
        if (low is None) != (high is None):
            errors.append(
                _err(number, scenario.field("canary_min_score" if low is None else "canary_max_score"),
                     "A canary needs both canary_min_score and canary_max_score (or neither).")
            )
        elif low is not None and low > high:
            errors.append(_err(number, scenario.field("canary_min_score"),
                               f"canary_min_score ({low}) is above canary_max_score ({high})."))
        elif low is not None and scenario.is_canary is False:
            errors.append(_err(number, scenario.field("is_canary"),
                               "is_canary is false but a canary score range is given."))
        elif low is not None:
            scenario.is_canary = True
    return scenario if len(errors) == before else None


# --- readers ----------------------------------------------------------------------------------
def _decoded_lines(binary, numbers: list[int]) -> Iterator[str]:
    """The file's lines as text; a line that is not UTF-8 stops the import (row: the record)."""
    for index, raw in enumerate(binary):
        if index == 0 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _FileError(f"The file is not UTF-8 text ({exc.reason} in this row).", row=numbers[0] + 1) from None


def _csv_rows(binary) -> Iterator[Row]:
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
                errors.append(_err(number, None, f"The row has {len(cells)} cells; the header has {len(header)}."))
            values = dict(zip(header, cells))
            context = _context_in(values, errors=errors, number=number)
            values["text"] = values.pop("scenario_text", None)
            scenario = _scenario_in(values, where="", errors=errors, number=number)
            yield Row(number, context, [scenario] if scenario else [], errors)
    except csv.Error as exc:
        raise _FileError(f"The CSV cannot be read past this row ({exc}).", row=numbers[0] + 1) from None
    if header is None:
        raise _FileError("The file is empty: no header row.", row=1)


def _csv_header(cells: list[str], number: int) -> list[str]:
    header = [c.strip().lower() for c in cells]
    if header and header[0] == exports.CSV_COLUMNS[0]:
        raise _FileError(
            "This is a MORALE CSV export (a spreadsheet view, not read back); import the JSONL export instead.",
            row=number,
        )
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if unknown:
        raise _FileError(
            f"Unknown column(s) {', '.join(_shown(c) for c in unknown)}; the columns are {', '.join(CSV_COLUMNS)}.",
            row=number, field=unknown[0],
        )
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise _FileError(f"Column(s) {', '.join(repeated)} appear more than once.", row=number, field=repeated[0])
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise _FileError(f"Required column(s) missing: {', '.join(missing)}.", row=number, field=missing[0])
    return header


def _jsonl_rows(binary) -> Iterator[Row]:
    for number, raw in enumerate(binary, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise _FileError(f"The line is not UTF-8 text ({exc.reason}).", row=number) from None
        except json.JSONDecodeError as exc:
            yield Row(number, None, [], [_err(number, None, f"Not valid JSON ({exc.msg} at column {exc.colno}).")])
            continue
        yield _jsonl_row(record, number)


def _jsonl_row(record, number: int) -> Row:
    errors: list[dict] = []
    if not isinstance(record, dict):
        return Row(number, None, [], [_err(number, None, f"Expected a JSON object, got {type(record).__name__}.")])
    if "format" in record:
        try:
            exports.check_record(record, f"line {number}")  # the export's own reader: one format, one check
        except exports.ExportFormatError as exc:
            return Row(number, None, [], [_err(number, "format", str(exc))])
    unknown = sorted(set(record) - set(CONTEXT_KEYS) - set(EXPORT_ONLY_CONTEXT_KEYS))
    for key in unknown:
        errors.append(_err(number, key, f"Unknown key {_shown(key)}; known keys: {', '.join(CONTEXT_KEYS)}."))
    context = _context_in(record, errors=errors, number=number)
    scenarios = []
    raw_scenarios = record.get("scenarios")
    if not isinstance(raw_scenarios, list):
        errors.append(_err(number, "scenarios", "scenarios must be a list of objects ([] for none)."))
        raw_scenarios = []
    for i, raw in enumerate(raw_scenarios):
        where = f"scenarios[{i}]."
        if not isinstance(raw, dict):
            errors.append(_err(number, f"scenarios[{i}]", "Each scenario must be a JSON object."))
            continue
        for key in sorted(set(raw) - set(SCENARIO_KEYS) - set(EXPORT_ONLY_SCENARIO_KEYS)):
            errors.append(_err(number, f"{where}{key}", f"Unknown key {_shown(key)}; known keys: {', '.join(SCENARIO_KEYS)}."))
        scenario = _scenario_in(raw, where=where, errors=errors, number=number)
        if scenario is not None:
            scenarios.append(scenario)
    return Row(number, context, scenarios, errors)


# --- images -----------------------------------------------------------------------------------
class ImageSource:
    """Where the images come from: ``read(path)`` gives the bytes or raises ValidationError."""

    label = "the images"

    def read(self, path: str) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _bounded(self, handle, size: int | None) -> bytes:
        limit = settings.MORALE_MAX_IMAGE_BYTES
        if size is not None and size > limit:
            raise ValidationError(f"The image is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB.")
        data = handle.read(limit + 1)
        if len(data) > limit:
            raise ValidationError(f"The image is larger than {limit / 1e6:.1f} MB.")
        return data


class FolderImages(ImageSource):
    """Images in a folder. A path never leaves it: ``..`` is refused earlier, and a symlink
    (a folder on the way or the file itself) must resolve inside the folder."""

    def __init__(self, root: Path):
        self.root = os.path.realpath(root)
        self.label = "the images folder"
        self._dirs: dict[str, str | None] = {}  # sub-folder -> its real path (None: outside)

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)

    def _real_dir(self, directory: str) -> str | None:
        if directory not in self._dirs:  # resolved once per sub-folder, not once per file
            real = os.path.realpath(os.path.join(self.root, directory))
            self._dirs[directory] = real if self._inside(real) else None
        return self._dirs[directory]

    def read(self, path: str) -> bytes:
        directory, _, name = path.rpartition("/")
        real_dir = self._real_dir(directory)
        if real_dir is None:
            raise ValidationError(f"{_shown(path)} leads outside the images folder (through a symlink); refused.")
        target = os.path.join(real_dir, name)
        try:
            try:
                fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.EMLINK):
                    raise
                real = os.path.realpath(target)  # the file is a symlink: follow it only inside the folder
                if not self._inside(real):
                    raise ValidationError(
                        f"{_shown(path)} leads outside the images folder (through a symlink); refused."
                    ) from None
                fd = os.open(real, os.O_RDONLY)
            with open(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise ValidationError(f"{_shown(path)} is not a file.")
                return self._bounded(handle, info.st_size)
        except (FileNotFoundError, NotADirectoryError):
            raise ValidationError(f"{_shown(path)} is not in the images folder.") from None
        except IsADirectoryError:
            raise ValidationError(f"{_shown(path)} is a folder, not an image file.") from None
        except PermissionError:
            raise ValidationError(f"{_shown(path)} cannot be read (permission denied).") from None


def _zip_entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    if ".." in name.split("/"):
        return "a '..' path that leads outside the zip"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    return None


class ZipImages(ImageSource):
    def __init__(self, file, name: str, owned=None):
        self.label = f"the zip {name}"
        self.owned = owned  # a file this source opened and closes
        try:
            self.zip = zipfile.ZipFile(file)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise _FileError(f"The images file {_shown(name)} is not a readable zip ({exc}).", field="images") from None
        self.entries: dict[str, zipfile.ZipInfo] = {}
        for info in self.zip.infolist():
            problem = _zip_entry_problem(info)
            if problem:
                self.zip.close()
                raise _FileError(
                    f"The zip holds an unsafe entry {_shown(info.filename)} ({problem}); nothing was imported.",
                    field="images",
                )
            if info.is_dir():
                continue
            key = "/".join(p for p in info.filename.replace("\\", "/").split("/") if p not in ("", "."))
            if key in self.entries:
                self.zip.close()
                raise _FileError(f"The zip holds {_shown(key)} twice; which one is meant is unclear.", field="images")
            self.entries[key] = info
        self.by_basename: dict[str, list[str]] = {}
        for key in self.entries:
            self.by_basename.setdefault(posixpath.basename(key), []).append(key)

    def read(self, path: str) -> bytes:
        info = self.entries.get(path)
        if info is None:
            near = self.by_basename.get(posixpath.basename(path), [])
            hint = f" (did you mean {_shown(near[0])}?)" if len(near) == 1 else ""
            raise ValidationError(f"{_shown(path)} is not in {self.label}{hint}.")
        try:
            with self.zip.open(info) as handle:
                return self._bounded(handle, info.file_size)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as exc:
            raise ValidationError(f"{_shown(path)} cannot be read from the zip ({exc}).") from None

    def close(self) -> None:
        self.zip.close()
        if self.owned is not None:
            self.owned.close()


def open_images(images, *, name: str | None = None) -> ImageSource:
    """An ImageSource for a folder path, a zip path or an open zip file; _FileError if unusable."""
    if images is None or images == "":
        raise _FileError("No images given: name a folder or a zip file.", field="images")
    if not isinstance(images, (str, os.PathLike)):
        return ZipImages(images, name or getattr(images, "name", "upload"))
    path = Path(images)
    if path.is_dir():
        return FolderImages(path)
    if not path.is_file():
        raise _FileError(f"The images folder or zip {_shown(str(path))} does not exist.", field="images")
    handle = open(path, "rb")
    try:
        return ZipImages(handle, path.name, owned=handle)
    except BaseException:
        handle.close()
        raise


def _check_images(rows: list[Row], source: ImageSource, keep: dict[str, bytes]) -> int:
    """Check each distinct image once; set ``row.sha256`` or add the error to every row using it.

    Checked files are kept in ``keep`` (sha256 -> bytes) while they total under
    ``KEEP_IMAGE_BYTES``, so that storing them does not read them again.
    """
    results: dict[str, tuple[str | None, str | None]] = {}  # path -> (sha256, error)
    kept = 0
    for row in rows:
        if row.context is None:
            continue
        path = row.context.image_path
        if path not in results:
            try:
                data = source.read(path)
                checked = check_image_upload(ContentFile(data, name=posixpath.basename(path)))
                results[path] = (checked.sha256, None)
                if kept + len(data) <= KEEP_IMAGE_BYTES and checked.sha256 not in keep:
                    keep[checked.sha256] = data
                    kept += len(data)
            except ValidationError as exc:
                results[path] = (None, f"{path}: " + " ".join(exc.messages))
        sha, problem = results[path]
        if problem:
            row.errors.append(_err(row.number, "image_path", problem))
        elif row.context.image_sha256 and row.context.image_sha256 != sha:
            row.errors.append(_err(row.number, "image_sha256",
                                   f"image_sha256 is {row.context.image_sha256} but {path} has sha256 {sha}."))
        else:
            row.sha256 = sha
    return len(results)


# --- the plan: contexts and scenarios of the file, matched against the database ----------------
@dataclass
class _Group:
    key: tuple
    context: ContextIn
    sha256: str
    first_row: int
    rows: list[int] = field(default_factory=list)
    scenarios: dict[str, tuple[ScenarioIn, int]] = field(default_factory=dict)  # casefolded text -> (scenario, row)
    pk: int | None = None  # the stored context it matched (or was created as)


_OPTIONAL = ("source", "image_origin", "image_unreliable")


def _key(context: ContextIn, sha256: str) -> tuple:
    return ("id", context.external_id) if context.external_id else ("image", sha256, context.setting)


def _group(rows: list[Row]) -> dict[tuple, _Group]:
    """Group the rows without errors by context; rows disagreeing with earlier ones get errors."""
    groups: dict[tuple, _Group] = {}
    for row in rows:
        if row.errors:
            continue
        key = _key(row.context, row.sha256)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(key=key, context=ContextIn(**{
                n: getattr(row.context, n) for n in ContextIn.__slots__}), sha256=row.sha256, first_row=row.number)
        else:
            problems = _context_differences(group.context, group.sha256, row.context, row.sha256)
            if problems:
                which = f"external_id {_shown(key[1])}" if key[0] == "id" else "the same image and setting"
                for name, stored in problems:
                    row.errors.append(_err(row.number, name,
                                           f"{name} differs from row {group.first_row} of the same context "
                                           f"({which}): {stored}."))
                continue
            for name in _OPTIONAL:  # fill in what earlier rows left out
                if getattr(group.context, name) is None:
                    setattr(group.context, name, getattr(row.context, name))
        seen_here: dict[str, ScenarioIn] = {}
        duplicate = False
        for scenario in row.scenarios:
            folded = scenario.text.casefold()
            earlier = group.scenarios.get(folded)
            if earlier is not None or folded in seen_here:
                where = f"row {earlier[1]}" if earlier is not None else "this row"
                row.errors.append(_err(row.number, scenario.field("text"),
                                       f"The same scenario as in {where}: {_shown(scenario.text)}."))
                duplicate = True
            seen_here[folded] = scenario
        if duplicate:
            continue
        group.rows.append(row.number)
        for folded, scenario in seen_here.items():
            group.scenarios[folded] = (scenario, row.number)
    return {k: g for k, g in groups.items() if g.rows}


def _context_differences(have: ContextIn, have_sha: str, new: ContextIn, new_sha: str) -> list[tuple[str, str]]:
    problems = []
    if have_sha != new_sha:
        problems.append(("image_path", f"another image ({_shown(have.image_path)} with sha256 {have_sha[:12]}...)"))
    if have.setting != new.setting:
        problems.append(("setting", f"there it is {_shown(have.setting)}"))
    for name in _OPTIONAL:
        a, b = getattr(have, name), getattr(new, name)
        if a is not None and b is not None and a != b:
            problems.append((name, f"there it is {_shown(a)}"))
    return problems


@dataclass
class _Stored:
    """What the database holds for the plan's contexts (read in bulk)."""

    by_external_id: dict[str, tuple]
    by_image: dict[tuple[str, str], tuple]
    scenarios: dict[tuple[int, str], tuple]  # (context pk, casefolded text) -> row


_C_COLUMNS = ("pk", "external_id", "image_sha256", "setting", "source", "image_origin", "image_unreliable")
_S_COLUMNS = ("pk", "context_id", "text", "text_only_label", "is_canary", "canary_min_score", "canary_max_score")


def _chunks(values: list, size: int = _IN_CHUNK) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _load_stored(groups: dict[tuple, _Group]) -> _Stored:
    external_ids = sorted(k[1] for k in groups if k[0] == "id")
    shas = sorted({k[1] for k in groups if k[0] == "image"})
    by_external_id, by_image = {}, {}
    for chunk in _chunks(external_ids):
        for row in Context.objects.filter(external_id__in=chunk).values_list(*_C_COLUMNS):
            by_external_id[row[1]] = row
    for chunk in _chunks(shas):
        for row in Context.objects.filter(image_sha256__in=chunk).order_by("pk").values_list(*_C_COLUMNS):
            by_image.setdefault((row[2], row[3]), row)  # the oldest of equal ones
    matched = sorted({r[0] for r in by_external_id.values()} | {r[0] for r in by_image.values()})
    scenarios = {}
    for chunk in _chunks(matched):
        for row in Scenario.objects.filter(context_id__in=chunk).values_list(*_S_COLUMNS):
            scenarios[(row[1], row[2].casefold())] = row
    return _Stored(by_external_id, by_image, scenarios)


def _stored_context(group: _Group, stored: _Stored) -> tuple | None:
    if group.key[0] == "id":
        return stored.by_external_id.get(group.key[1])
    return stored.by_image.get((group.sha256, group.context.setting))


def _match(groups: dict[tuple, _Group], stored: _Stored) -> list[dict]:
    """Set ``group.pk`` for contexts already stored; return errors for rows that disagree with them."""
    errors = []
    claimed: dict[tuple[int, str], int] = {}  # (stored context, text) -> row: two groups may match one context
    for group in groups.values():
        row = _stored_context(group, stored)
        group.pk = row[0] if row is not None else None
        if row is None:
            for scenario, number in group.scenarios.values():
                if scenario.is_canary and scenario.canary_min_score is None:
                    errors.append(_err(number, scenario.field("is_canary"),
                                       "A new canary needs canary_min_score and canary_max_score "
                                       "(a dataset export does not carry them)."))
            continue
        pk, _, sha, setting, source, origin, unreliable = row
        problems = []
        if sha != group.sha256:
            problems.append(("image_path", f"another image (sha256 {sha[:12]}...)"))
        if setting != group.context.setting:
            problems.append(("setting", f"setting {_shown(setting)}"))
        for name, value in (("source", source), ("image_origin", origin), ("image_unreliable", unreliable)):
            given = getattr(group.context, name)
            if given is not None and given != value:
                problems.append((name, f"{name} {_shown(value)}"))
        if problems:
            label = f"external_id {_shown(group.key[1])}" if group.key[0] == "id" else "This image and setting"
            for number in group.rows:
                for name, what in problems:
                    errors.append(_err(number, name, f"{label} is already stored as context #{pk} with {what}; "
                                                     "an import never changes stored contexts."))
            continue
        for folded, (scenario, number) in group.scenarios.items():
            earlier = claimed.setdefault((pk, folded), number)
            if earlier != number:
                errors.append(_err(number, scenario.field("text"),
                                   f"The same scenario as in row {earlier} (both rows match context #{pk}): "
                                   f"{_shown(scenario.text)}."))
                continue
            existing = stored.scenarios.get((pk, folded))
            if existing is None:
                if scenario.is_canary and scenario.canary_min_score is None:
                    errors.append(_err(number, scenario.field("is_canary"),
                                       "A new canary needs canary_min_score and canary_max_score "
                                       "(a dataset export does not carry them)."))
                continue
            s_pk, _, _, label, is_canary, low, high = existing
            for name, given, value in (
                ("text_only_label", scenario.text_only_label, label),
                ("is_canary", scenario.is_canary, is_canary),
                ("canary_min_score", scenario.canary_min_score, low),
                ("canary_max_score", scenario.canary_max_score, high),
            ):
                if given is not None and given != value:
                    errors.append(_err(number, scenario.field(name),
                                       f"This scenario is already stored (#{s_pk}) with {name} {_shown(value)}; "
                                       f"the file says {_shown(given)}. An import never changes stored scenarios."))
    return errors


# --- writing ----------------------------------------------------------------------------------
def _store_images(groups: list[_Group], source: ImageSource, kept: dict[str, bytes]) -> dict[str, str]:
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
        _delete_files(stored.values())
        raise
    return stored


def _delete_files(names) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # noqa: BLE001 - best effort; the import's outcome is already decided
            logger.warning("Could not delete the imported image %s", name, exc_info=True)


def _write(batch: ImportBatch, groups: dict[tuple, _Group], images: dict[str, str]) -> dict:
    """In the caller's transaction: re-match, insert, queue scoring. Returns the counts.

    ``images`` (sha256 -> stored name) must hold the image of every context that was new at
    validation; one that another import has stored since is matched, not created.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PG_LOCK_KEY])
    stored = _load_stored(groups)
    if _match(groups, stored):
        raise _ChangedMeanwhile()
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


# --- the service ------------------------------------------------------------------------------
def _detect_format(name: str, head: bytes) -> str:
    suffix = Path(name).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if head.startswith(b"PAR1"):
        raise _FileError("This is a Parquet file; import the JSONL dataset export (or a CSV) instead.", row=1)
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def _file_sha256(handle) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    handle.seek(0)
    return digest.hexdigest()


def _finish(batch: ImportBatch, status: str, counts: dict, errors: list[dict]) -> ImportBatch:
    errors = sorted(errors, key=lambda e: (e["row"] is not None, e["row"] or 0))
    kept = errors[:MAX_STORED_ERRORS]
    if len(errors) > MAX_STORED_ERRORS:
        kept.append(_err(None, None, f"... and {len(errors) - MAX_STORED_ERRORS} more errors (not stored)."))
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
) -> ImportBatch:
    """Import contexts and scenarios from a CSV or JSON Lines file (see the module docstring).

    ``batch``: a queued batch already claimed by ``import_run`` (its record is reused);
    otherwise a new one is made.

    ``data_file``: a path or a binary file object (e.g. an upload); ``images``: a folder
    path, a zip path or a binary zip file object. ``fmt``: ``"csv"`` or ``"jsonl"``; by
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
    if images_name is None:
        images_name = str(images) if isinstance(images, (str, os.PathLike)) else getattr(images, "name", "upload")
    if batch is None:
        batch = ImportBatch(created_by=created_by)
    batch.file_name, batch.file_sha256, batch.format = file_name, "", fmt or ""
    batch.status = ImportBatch.Status.RUNNING
    batch.options = {"allow_partial": bool(allow_partial), "images": images_name}
    started = time.perf_counter()
    timings: dict[str, float] = {}
    source = None
    images_to_delete: list[str] = []
    try:
        batch.file_sha256 = _file_sha256(data_file)
        head = data_file.read(64)
        data_file.seek(0)
        try:
            batch.format = fmt or _detect_format(file_name, head)
        except _FileError:
            batch.format = "?"
            raise
        finally:
            batch.full_clean()
            batch.save()
        source = open_images(images, name=images_name)

        # 1. every row, checked on its own
        reader = _csv_rows if batch.format == "csv" else _jsonl_rows
        rows = list(reader(data_file))
        timings["parse"] = time.perf_counter() - started
        mark = time.perf_counter()
        kept: dict[str, bytes] = {}
        distinct_images = _check_images(rows, source, kept)
        timings["check_images"] = time.perf_counter() - mark

        # 2. rows of one context agree with each other and with the database
        mark = time.perf_counter()
        while True:
            groups = _group(rows)
            db_errors = _match(groups, _load_stored(groups))
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
        images = _store_images([g for g in groups.values() if g.pk is None], source, kept)
        kept.clear()
        images_to_delete = list(images.values())
        timings["store_images"] = time.perf_counter() - mark
        mark = time.perf_counter()
        with transaction.atomic():
            counts.update(_write(batch, groups, images))
            _finish(batch, ImportBatch.Status.DONE, counts, errors)
            timings["insert"] = time.perf_counter() - mark
            mark = time.perf_counter()
        timings["commit_and_queue_scoring"] = time.perf_counter() - mark  # on_commit: the scoring tasks
        images_to_delete = []
        if counts["images_stored"] < len(images):  # another import stored some of them meanwhile
            used = set(Context.objects.filter(import_batch=batch).values_list("image_sha256", flat=True))
            _delete_files(name for sha, name in images.items() if sha not in used)
        timings["total"] = time.perf_counter() - started
        logger.info("import #%s done: %s; seconds %s", batch.pk, json.dumps(counts),
                    json.dumps({k: round(v, 3) for k, v in timings.items()}), extra={"timings": timings})
        return batch
    except _FileError as exc:
        if batch.pk is None:
            batch.save()
        return _finish(batch, ImportBatch.Status.REJECTED, {}, [_err(exc.row, exc.field, exc.message)])
    except Exception as exc:
        _delete_files(images_to_delete)
        images_to_delete = []
        if batch.pk is None:
            batch.format = batch.format or "?"
            batch.save()
        if isinstance(exc, _ChangedMeanwhile):
            message = "Another import stored some of these contexts or scenarios meanwhile; nothing was imported. Run it again."
        else:
            message = f"{type(exc).__name__}: {exc}"[:2000]
        logger.exception("import #%s failed", batch.pk)
        _finish(batch, ImportBatch.Status.FAILED, {}, [_err(None, None, message)])
        raise ImportFailed(batch) from exc
    finally:
        if images_to_delete:  # interrupted (KeyboardInterrupt, SystemExit) after storing images
            _delete_files(images_to_delete)
        if source is not None:
            source.close()
        if opened is not None:
            opened.close()


# --- in the background (admin uploads too large to import within the request) ------------
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
        _finish(batch, ImportBatch.Status.FAILED, {}, [_err(None, None, f"the uploaded files are missing: {exc}")])
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
