"""Cleaning one row's cells (CSV) or values (JSONL) into ``ContextIn`` / ``ScenarioIn``, with
the limits of the models and the rules of ``annotation.services``; errors are collected per
row, never raised. The rules: docs/dataset-import.md."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from annotation.models import Context
from annotation.services import scenario_text_clean

from .errors import row_error, shown

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
        raise ValidationError(f"{name} must be text, not {shown(value)}.")
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
        raise ValidationError(f"{name} must be {shown_allowed}, not {shown(value)}.")
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
    raise ValidationError(f"{name} must be true or false, not {shown(value)}.")


def clean_image_path(value) -> str:
    """The image path as a relative, normalised POSIX path; ValidationError if it is unsafe."""
    if isinstance(value, bool) or not isinstance(value, str) or not value.strip():
        raise ValidationError("image_path is required: the image's path inside the images folder or zip.")
    path = value.strip().replace("\\", "/")
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        raise ValidationError(f"image_path must be relative to the images folder or zip, not {shown(value)}.")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValidationError(f"image_path must not contain '..' (it would leave the images folder): {shown(value)}.")
    if not parts:
        raise ValidationError(f"image_path names no file: {shown(value)}.")
    return "/".join(parts)


def _max_length(name: str) -> int:
    return Context._meta.get_field(name).max_length


def context_in(values: dict, *, errors: list[dict], number: int) -> ContextIn | None:
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
            errors.append(row_error(number, name, " ".join(exc.messages)))

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
            errors.append(row_error(number, name, f"{name} must be at most {_max_length(name)} characters (it has {len(value)})."))
    origin = parsed.get("image_origin")
    if origin is not None and origin not in Context.ImageOrigin.values:
        errors.append(row_error(number, "image_origin",
                                f"image_origin must be one of {', '.join(Context.ImageOrigin.values)}, not {shown(origin)}."))
    sha = parsed.get("image_sha256")
    if sha is not None:
        parsed["image_sha256"] = sha = sha.lower()
        if not _SHA256.fullmatch(sha):
            errors.append(row_error(number, "image_sha256", f"image_sha256 must be 64 hexadecimal digits, not {shown(sha)}."))
    if len(errors) > before:
        return None
    parsed["external_id"] = parsed["external_id"] or ""
    return ContextIn(**parsed)


def scenario_in(values: dict, *, where: str, errors: list[dict], number: int) -> ScenarioIn | None:
    scenario = ScenarioIn(text="", where=where)
    before = len(errors)
    try:
        scenario.text = scenario_text_clean(values.get("text"))
    except ValidationError as exc:
        errors.append(row_error(number, scenario.field("text"), " ".join(exc.messages)))
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
            errors.append(row_error(number, scenario.field(name), " ".join(exc.messages)))
    low, high = scenario.canary_min_score, scenario.canary_max_score
    if len(errors) == before:
        if (low is None) != (high is None):
            errors.append(
                row_error(number, scenario.field("canary_min_score" if low is None else "canary_max_score"),
                          "A canary needs both canary_min_score and canary_max_score (or neither).")
            )
        elif low is not None and low > high:
            errors.append(row_error(number, scenario.field("canary_min_score"),
                                    f"canary_min_score ({low}) is above canary_max_score ({high})."))
        elif low is not None and scenario.is_canary is False:
            errors.append(row_error(number, scenario.field("is_canary"),
                                    "is_canary is false but a canary score range is given."))
        elif low is not None:
            scenario.is_canary = True
    return scenario if len(errors) == before else None
