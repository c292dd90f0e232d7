"""The plan: the file's rows grouped by context (``group_rows``) and matched against what the
database holds (``load_stored``, ``match_stored``), in bulk queries. Matched rows are never
changed; a disagreement is an error of the row. The rules: docs/dataset-import.md, "Matching"."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from annotation.models import Context, Scenario

from .errors import row_error, shown
from .rows import ContextIn, Row, ScenarioIn

_IN_CHUNK = 900  # values per IN (...): under SQLite's parameter limit
_OPTIONAL = ("source", "image_origin", "image_unreliable")
_C_COLUMNS = ("pk", "external_id", "image_sha256", "setting", "source", "image_origin", "image_unreliable")
_S_COLUMNS = ("pk", "context_id", "text", "text_only_label", "is_canary", "canary_min_score", "canary_max_score")


@dataclass
class Group:
    key: tuple
    context: ContextIn
    sha256: str
    first_row: int
    rows: list[int] = field(default_factory=list)
    scenarios: dict[str, tuple[ScenarioIn, int]] = field(default_factory=dict)  # casefolded text -> (scenario, row)
    pk: int | None = None  # the stored context it matched (or was created as)


def _key(context: ContextIn, sha256: str) -> tuple:
    return ("id", context.external_id) if context.external_id else ("image", sha256, context.setting)


def group_rows(rows: list[Row]) -> dict[tuple, Group]:
    """Group the rows without errors by context; rows disagreeing with earlier ones get errors."""
    groups: dict[tuple, Group] = {}
    for row in rows:
        if row.errors:
            continue
        key = _key(row.context, row.sha256)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(key=key, context=ContextIn(**{
                n: getattr(row.context, n) for n in ContextIn.__slots__}), sha256=row.sha256, first_row=row.number)
        else:
            problems = _context_differences(group.context, group.sha256, row.context, row.sha256)
            if problems:
                which = f"external_id {shown(key[1])}" if key[0] == "id" else "the same image and setting"
                for name, stored in problems:
                    row.errors.append(row_error(row.number, name,
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
                row.errors.append(row_error(row.number, scenario.field("text"),
                                            f"The same scenario as in {where}: {shown(scenario.text)}."))
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
        problems.append(("image_path", f"another image ({shown(have.image_path)} with sha256 {have_sha[:12]}...)"))
    if have.setting != new.setting:
        problems.append(("setting", f"there it is {shown(have.setting)}"))
    for name in _OPTIONAL:
        a, b = getattr(have, name), getattr(new, name)
        if a is not None and b is not None and a != b:
            problems.append((name, f"there it is {shown(a)}"))
    return problems


@dataclass
class Stored:
    """What the database holds for the plan's contexts (read in bulk)."""

    by_external_id: dict[str, tuple]
    by_image: dict[tuple[str, str], tuple]
    scenarios: dict[tuple[int, str], tuple]  # (context pk, casefolded text) -> row


def _chunks(values: list, size: int = _IN_CHUNK) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def load_stored(groups: dict[tuple, Group]) -> Stored:
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
    return Stored(by_external_id, by_image, scenarios)


def _stored_context(group: Group, stored: Stored) -> tuple | None:
    if group.key[0] == "id":
        return stored.by_external_id.get(group.key[1])
    return stored.by_image.get((group.sha256, group.context.setting))


def _is_canary_without_range(scenario: ScenarioIn) -> bool:
    return bool(scenario.is_canary) and scenario.canary_min_score is None


def _new_canary_error(scenario: ScenarioIn, number: int) -> dict:
    return row_error(number, scenario.field("is_canary"),
                     "A new canary needs canary_min_score and canary_max_score (a dataset export does not carry them).")


def match_stored(groups: dict[tuple, Group], stored: Stored) -> list[dict]:
    """Set ``group.pk`` for contexts already stored; return errors for rows that disagree with them."""
    errors = []
    claimed: dict[tuple[int, str], int] = {}  # (stored context, text) -> row: two groups may match one context
    for group in groups.values():
        row = _stored_context(group, stored)
        group.pk = row[0] if row is not None else None
        if row is None:
            for scenario, number in group.scenarios.values():
                if _is_canary_without_range(scenario):
                    errors.append(_new_canary_error(scenario, number))
            continue
        pk, _, sha, setting, source, origin, unreliable = row
        problems = []
        if sha != group.sha256:
            problems.append(("image_path", f"another image (sha256 {sha[:12]}...)"))
        if setting != group.context.setting:
            problems.append(("setting", f"setting {shown(setting)}"))
        for name, value in (("source", source), ("image_origin", origin), ("image_unreliable", unreliable)):
            given = getattr(group.context, name)
            if given is not None and given != value:
                problems.append((name, f"{name} {shown(value)}"))
        if problems:
            label = f"external_id {shown(group.key[1])}" if group.key[0] == "id" else "This image and setting"
            for number in group.rows:
                for name, what in problems:
                    errors.append(row_error(number, name, f"{label} is already stored as context #{pk} with {what}; "
                                            "an import never changes stored contexts."))
            continue
        for folded, (scenario, number) in group.scenarios.items():
            earlier = claimed.setdefault((pk, folded), number)
            if earlier != number:
                errors.append(row_error(number, scenario.field("text"),
                                        f"The same scenario as in row {earlier} (both rows match context #{pk}): "
                                        f"{shown(scenario.text)}."))
                continue
            existing = stored.scenarios.get((pk, folded))
            if existing is None:
                if _is_canary_without_range(scenario):
                    errors.append(_new_canary_error(scenario, number))
                continue
            s_pk, _, _, label, is_canary, low, high = existing
            for name, given, value in (
                ("text_only_label", scenario.text_only_label, label),
                ("is_canary", scenario.is_canary, is_canary),
                ("canary_min_score", scenario.canary_min_score, low),
                ("canary_max_score", scenario.canary_max_score, high),
            ):
                if given is not None and given != value:
                    errors.append(row_error(number, scenario.field(name),
                                            f"This scenario is already stored (#{s_pk}) with {name} {shown(value)}; "
                                            f"the file says {shown(given)}. An import never changes stored scenarios."))
    return errors
