"""Cleaning one row's cells (CSV) or values (JSONL) into ``ContextIn`` / ``ScenarioIn`` and
their ``RatingIn`` / ``AggregateIn``, with the limits of the models and the rules of
``annotation.services``; errors are collected per row, never raised. The rules:
docs/dataset-import.md."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, time
from datetime import timezone as dt_timezone

from django.core.exceptions import ValidationError
from django.utils.dateparse import parse_date, parse_datetime

from annotation.models import Context, ImportedAggregate, ImportedRater, Judgment
from annotation.services import scenario_text_clean
from morale.text import text_check, text_clean

from .errors import row_error, shown

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(slots=True)
class ContextIn:
    """A context as one row gives it. ``None`` in an optional field: not given.

    A row of ratings may only refer to a context by its ``external_id`` (stored, or given
    in full by another row of the file): then ``image_path`` and ``setting`` are None.
    """

    external_id: str
    image_path: str | None
    setting: str | None
    source: str | None = None
    image_origin: str | None = None
    image_unreliable: bool | None = None
    image_sha256: str | None = None  # declared in the file; checked against the image

    @property
    def refers_only(self) -> bool:
        return self.image_path is None


# Field names in error messages where they differ from the attribute: (CSV, JSONL).
_RATING_FIELDS = {"rater": ("rater_id", "annotator_id"), "rated_at": ("rated_at", "created_at")}
_AGGREGATE_FIELDS = {"raters": ("raters", "n")}


def _entry_field(where: str, names: dict, name: str) -> str:
    """A rating's or aggregate's field as the file names it: the CSV column, or the JSONL path."""
    csv_name, json_name = names.get(name, (name, name))
    return f"{where}{json_name}" if where else csv_name


@dataclass(slots=True)
class RatingIn:
    """One rater's score of the scenario it belongs to (an imported rating)."""

    rater: str  # the file's rater id
    score: int
    modality: str  # "" when the file does not say
    rated_at: datetime | None
    where: str  # "" (CSV) or "scenarios[2].judgments[0]." (JSONL)

    def field(self, name: str) -> str:
        return _entry_field(self.where, _RATING_FIELDS, name)


@dataclass(slots=True)
class AggregateIn:
    """A pre-aggregated score: the mean of ``raters`` raters (``rater_group``: which raters)."""

    rater_group: str
    mean: float
    raters: int
    where: str  # "" (CSV) or "scenarios[2].aggregates[0]." (JSONL)

    def field(self, name: str) -> str:
        return _entry_field(self.where, _AGGREGATE_FIELDS, name)


@dataclass(slots=True)
class ScenarioIn:
    text: str
    where: str  # the field prefix in error messages: "" (CSV) or "scenarios[2]." (JSONL)
    text_only_label: int | None = None
    is_canary: bool | None = None
    canary_min_score: int | None = None
    canary_max_score: int | None = None
    ratings: list[RatingIn] = field(default_factory=list)
    aggregates: list[AggregateIn] = field(default_factory=list)
    defines: bool = True  # False on a row that only refers to its context: the scenario must exist

    def field(self, name: str) -> str:
        if not self.where:  # CSV
            return {"text": "scenario_text"}.get(name, name)
        return f"{self.where}{name}"

    @property
    def carries_ratings(self) -> bool:
        return bool(self.ratings or self.aggregates)


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
    return text_clean(str(value), field=name).strip()


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
    text_check(value.strip(), field="image_path")
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


def blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


_CONTEXT_FIELDS = ("source", "image_origin", "image_unreliable", "image_sha256")


def context_in(values: dict, *, errors: list[dict], number: int, may_refer: bool = False) -> ContextIn | None:
    """Parse and check a row's context fields (``values``: raw cells or JSON values).

    The limits are the model's own (field lengths and choices, read from ``Context``); the
    checks run in Python, without a query per row. ``may_refer``: the row carries ratings,
    so an ``external_id`` without ``image_path`` and ``setting`` may refer to a context
    stored or given by another row.
    """
    before = len(errors)
    if may_refer and blank(values.get("image_path")) and blank(values.get("setting")):
        external_id = None
        try:
            external_id = _text(values.get("external_id"), "external_id")
        except ValidationError as exc:
            errors.append(row_error(number, "external_id", " ".join(exc.messages)))
        if external_id is None and len(errors) == before:
            errors.append(row_error(number, "image_path", "image_path and setting are required (a row of ratings "
                                    "may leave both out only when it names its context by external_id)."))
        for name in _CONTEXT_FIELDS:
            if not blank(values.get(name)):
                errors.append(row_error(number, name, f"{name} is given, but image_path and setting are not: a row "
                                        "that only refers to a context by external_id gives no context fields."))
        if len(errors) > before:
            return None
        if len(external_id) > _max_length("external_id"):
            errors.append(row_error(number, "external_id", f"external_id must be at most "
                                    f"{_max_length('external_id')} characters (it has {len(external_id)})."))
            return None
        return ContextIn(external_id=external_id, image_path=None, setting=None)
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


# --- ratings ------------------------------------------------------------------------------------
_MODALITIES = tuple(Judgment.Modality.values)


def _rated_at(value, name: str) -> datetime | None:
    """An ISO 8601 time or date (a date is its midnight); without a zone, UTC."""
    if blank(value):
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be an ISO 8601 time such as 2026-11-22T15:16:45Z, not {shown(value)}.")
    text = value.strip()
    try:
        moment = parse_datetime(text)
        if moment is None and (day := parse_date(text)) is not None:
            moment = datetime.combine(day, time())
    except ValueError:  # well-formed but impossible, e.g. 2026-02-30
        moment = None
    if moment is None:
        raise ValidationError(f"{name} must be an ISO 8601 time such as 2026-11-22T15:16:45Z, not {shown(value)}.")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt_timezone.utc)


def _modality(value, name: str) -> str:
    if blank(value):
        return ""
    cell = value.strip().lower() if isinstance(value, str) else value
    if cell not in _MODALITIES:
        raise ValidationError(f"Unknown modality {shown(value)}: {name} must be text, image or both "
                              "(or empty: not known).")
    return cell


def rating_in(values: dict, *, where: str, errors: list[dict], number: int) -> RatingIn | None:
    """One rating from ``values`` keyed by its field names (``RatingIn.field``): a rater id and
    a whole score 1-5 are required, a modality and a time optional."""
    rating = RatingIn(rater="", score=0, modality="", rated_at=None, where=where)
    before = len(errors)
    limit = ImportedRater._meta.get_field("external_id").max_length
    checks = (
        ("rater", lambda v: _text(v, rating.field("rater"), required=True)),
        ("score", lambda v: _whole(v, rating.field("score"), (1, 2, 3, 4, 5), "a whole number from 1 to 5")),
        ("modality", lambda v: _modality(v, rating.field("modality"))),
        ("rated_at", lambda v: _rated_at(v, rating.field("rated_at"))),
    )
    for name, parse in checks:
        try:
            setattr(rating, name, parse(values.get(rating.field(name).removeprefix(where))))
        except ValidationError as exc:
            errors.append(row_error(number, rating.field(name), " ".join(exc.messages)))
    if len(errors) == before and not rating.score:
        errors.append(row_error(number, rating.field("score"), f"{rating.field('score')} is required with a rater."))
    if len(errors) == before and len(rating.rater) > limit:
        errors.append(row_error(number, rating.field("rater"), f"{rating.field('rater')} must be at most {limit} "
                                f"characters (it has {len(rating.rater)})."))
    return rating if len(errors) == before else None


def _mean(value, name: str) -> float:
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or not 1 <= number <= 5:
        raise ValidationError(f"{name} must be a number from 1 to 5 (the raters' mean score), not {shown(value)}.")
    return number


def _raters(value, name: str) -> int:
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*\+?\d+\s*", value):
        number = int(value)
    if number is None or number < 1:
        raise ValidationError(f"{name} must be a whole number of raters, at least 1, not {shown(value)}.")
    return number


def aggregate_in(values: dict, *, where: str, errors: list[dict], number: int) -> AggregateIn | None:
    """One pre-aggregated score from ``values`` keyed by its field names (``AggregateIn.field``)."""
    aggregate = AggregateIn(rater_group="", mean=0.0, raters=0, where=where)
    before = len(errors)
    limit = ImportedAggregate._meta.get_field("rater_group").max_length
    checks = (
        ("mean", lambda v: _mean(v, aggregate.field("mean"))),
        ("raters", lambda v: _raters(v, aggregate.field("raters"))),
        ("rater_group", lambda v: _text(v, aggregate.field("rater_group")) or ""),
    )
    for name, parse in checks:
        try:
            setattr(aggregate, name, parse(values.get(aggregate.field(name).removeprefix(where))))
        except ValidationError as exc:
            errors.append(row_error(number, aggregate.field(name), " ".join(exc.messages)))
    if len(errors) == before and len(aggregate.rater_group) > limit:
        errors.append(row_error(number, aggregate.field("rater_group"), f"rater_group must be at most {limit} "
                                f"characters (it has {len(aggregate.rater_group)})."))
    return aggregate if len(errors) == before else None
