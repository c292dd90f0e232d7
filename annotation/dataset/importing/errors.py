"""The import's errors: one row's error as stored on the batch (``row_error``), a file that
cannot be read at all (``FileError``: the whole import is rejected), and the exceptions that
end an import (``ImportFailed``, ``ChangedMeanwhile``)."""

from __future__ import annotations

import json

from annotation.models import ImportBatch
from morale.text import text_escaped


class ImportFailed(Exception):
    """An import stopped on an unexpected error; ``batch`` is its record, marked failed."""

    def __init__(self, batch: ImportBatch):
        super().__init__(f"import #{batch.pk} failed: {batch.errors[0]['message'] if batch.errors else ''}")
        self.batch = batch


class FileError(Exception):
    """The file (or the images source) cannot be read: the whole import is rejected."""

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None):
        super().__init__(message)
        self.row, self.field, self.message = row, field, message


class ChangedMeanwhile(Exception):
    """Another import changed matching rows between validation and writing."""


def row_error(row: int | None, field_name: str | None, message: str) -> dict:
    """One stored error. A field name or message that echoes a control character (an unknown
    JSON key holding NUL) has it escaped: the database refuses NUL in text."""
    return {"row": row, "field": None if field_name is None else text_escaped(field_name), "message": text_escaped(message)}


def shown(value, limit: int = 60) -> str:
    """A value quoted for an error message, shortened."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return json.dumps(text[:limit] + ("..." if len(text) > limit else ""), ensure_ascii=False)
