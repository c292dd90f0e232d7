"""The plan: the file's rows grouped by context (``group_rows``), with their scenarios, ratings
and pre-aggregated scores, and matched against what the database holds (``load_stored``,
``match_stored``), in bulk queries. Matched rows are never changed; a disagreement is an
error of the row. The rules: docs/dataset-import.md, "Matching" and "Ratings"."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from annotation.models import Annotator, Context, ImportedAggregate, ImportedRater, ImportedRating, Judgment, Scenario

from .errors import row_error, shown
from .rows import AggregateIn, ContextIn, RatingIn, Row, ScenarioIn

_IN_CHUNK = 900  # values per IN (...): under SQLite's parameter limit
_OPTIONAL = ("source", "image_origin", "image_unreliable")
_C_COLUMNS = ("pk", "external_id", "image_sha256", "setting", "source", "image_origin", "image_unreliable")
_S_COLUMNS = ("pk", "context_id", "text", "text_only_label", "is_canary", "canary_min_score", "canary_max_score")
_SCENARIO_OPTIONAL = ("text_only_label", "is_canary", "canary_min_score", "canary_max_score")


@dataclass
class Group:
    key: tuple
    context: ContextIn
    sha256: str
    first_row: int
    rows: list[int] = field(default_factory=list)
    scenarios: dict[str, tuple[ScenarioIn, int]] = field(default_factory=dict)  # casefolded text -> (scenario, row)
    # (casefolded scenario text, rater id) -> (rating, row); (text, rater group) -> (aggregate, row)
    ratings: dict[tuple[str, str], tuple[RatingIn, int]] = field(default_factory=dict)
    aggregates: dict[tuple[str, str], tuple[AggregateIn, int]] = field(default_factory=dict)
    pk: int | None = None  # the stored context it matched (or was created as)
    # set by match_stored: ratings and aggregates already stored; ratings whose rater is an
    # annotator of this database who gave that judgment here (a re-imported export of it)
    present_ratings: set[tuple[str, str]] = field(default_factory=set)
    live_ratings: set[tuple[str, str]] = field(default_factory=set)
    present_aggregates: set[tuple[str, str]] = field(default_factory=set)

    def rows_rating(self, folded: str) -> list[int]:
        """The rows that carry ratings or aggregates of one scenario."""
        found = {n for (text, _), (_, n) in self.ratings.items() if text == folded}
        return sorted(found | {n for (text, _), (_, n) in self.aggregates.items() if text == folded})


def _key(context: ContextIn, sha256: str) -> tuple:
    return ("id", context.external_id) if context.external_id else ("image", sha256, context.setting)


def _copy(context: ContextIn) -> ContextIn:
    return ContextIn(**{n: getattr(context, n) for n in ContextIn.__slots__})


def group_rows(rows: list[Row]) -> dict[tuple, Group]:
    """Group the rows without errors by context; rows disagreeing with earlier ones get errors.

    A row is taken whole or not at all: its context, scenarios, ratings and aggregates
    join the plan only when none of them disagrees with earlier rows.
    """
    groups: dict[tuple, Group] = {}
    for row in rows:
        if row.errors:
            continue
        key = _key(row.context, row.sha256)
        group = groups.get(key)
        if group is not None and not row.context.refers_only and not group.context.refers_only:
            problems = _context_differences(group.context, group.sha256, row.context, row.sha256)
            if problems:
                which = f"external_id {shown(key[1])}" if key[0] == "id" else "the same image and setting"
                for name, stored in problems:
                    row.errors.append(row_error(row.number, name,
                                                f"{name} differs from row {group.first_row} of the same context "
                                                f"({which}): {stored}."))
                continue
        seen_here: dict[str, ScenarioIn] = {}
        ratings: dict[tuple[str, str], tuple[RatingIn, int]] = {}
        aggregates: dict[tuple[str, str], tuple[AggregateIn, int]] = {}
        before = len(row.errors)
        for scenario in row.scenarios:
            folded = scenario.text.casefold()
            earlier = group.scenarios.get(folded) if group is not None else None
            if earlier is not None or folded in seen_here:
                where = f"row {earlier[1]}" if earlier is not None else "this row"
                other = earlier[0] if earlier is not None else seen_here[folded]
                if not (scenario.carries_ratings or other.carries_ratings):  # a scenario repeats only to carry ratings
                    row.errors.append(row_error(row.number, scenario.field("text"),
                                                f"The same scenario as in {where}: {shown(scenario.text)}."))
                    continue
                for name in _SCENARIO_OPTIONAL:
                    a, b = getattr(other, name), getattr(scenario, name)
                    if a is not None and b is not None and a != b:
                        row.errors.append(row_error(row.number, scenario.field(name),
                                                    f"{name} differs from {where}, the same scenario: there it is "
                                                    f"{shown(a)}."))
            _once(row, scenario.ratings, ratings, group.ratings if group else {}, lambda r: (folded, r.rater), "rater",
                  lambda r, where: f"The same rater twice on one scenario: {shown(r.rater)} rated "
                  f"{shown(scenario.text)} in {where} already.")
            _once(row, scenario.aggregates, aggregates, group.aggregates if group else {},
                  lambda a: (folded, a.rater_group), "rater_group",
                  lambda a, where: f"The same rater group ({shown(a.rater_group)}) twice on one scenario: "
                  f"{shown(scenario.text)} has its mean in {where} already.")
            seen_here.setdefault(folded, scenario)
            _merge(seen_here[folded], scenario)
        if len(row.errors) > before:
            continue
        # the row agrees with everything before it: it joins the plan
        if group is None:
            group = groups[key] = Group(key=key, context=_copy(row.context), sha256=row.sha256, first_row=row.number)
        elif group.context.refers_only and not row.context.refers_only:  # the first row that gives the context
            group.context, group.sha256, group.first_row = _copy(row.context), row.sha256, row.number
        elif not row.context.refers_only:
            for name in _OPTIONAL:  # fill in what earlier rows left out
                if getattr(group.context, name) is None:
                    setattr(group.context, name, getattr(row.context, name))
        group.rows.append(row.number)
        for folded, scenario in seen_here.items():
            earlier = group.scenarios.get(folded)
            if earlier is None or (scenario.defines and not earlier[0].defines):
                if earlier is not None:
                    _merge(scenario, earlier[0])
                group.scenarios[folded] = (scenario, row.number)
            else:
                _merge(earlier[0], scenario)
        group.ratings.update(ratings)
        group.aggregates.update(aggregates)
    return {k: g for k, g in groups.items() if g.rows}


def _once(row: Row, entries: list, found: dict, earlier: dict, key, field_name: str, twice) -> None:
    """Add each rating (or aggregate) of a row to ``found`` under ``key(entry)``; one whose key
    an earlier row (``earlier``) or this row has already is an error of the row."""
    for entry in entries:
        k = key(entry)
        known = earlier.get(k) or found.get(k)
        if known is not None:
            where = "this row" if known[1] == row.number else f"row {known[1]}"
            row.errors.append(row_error(row.number, entry.field(field_name), twice(entry, where)))
        found[k] = (entry, row.number)


def _merge(into: ScenarioIn, other: ScenarioIn) -> None:
    """Fill in the optional fields ``into`` leaves out from ``other`` (they agree where both give one)."""
    if into is other:
        return
    for name in _SCENARIO_OPTIONAL:
        if getattr(into, name) is None:
            setattr(into, name, getattr(other, name))
    into.defines = into.defines or other.defines


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
    # The plan's rater ids: imported raters (by public or external id) and annotators (public id).
    raters: dict[str, int] = field(default_factory=dict)
    annotators: dict[str, int] = field(default_factory=dict)
    judged: set[tuple[int, int]] = field(default_factory=set)  # (annotator, scenario) with a judgment
    ratings: dict[tuple[int, int], tuple] = field(default_factory=dict)  # (scenario, rater) -> (score, modality, at, batch)
    aggregates: dict[tuple[int, str], tuple] = field(default_factory=dict)  # (scenario, group) -> (mean, raters, batch)


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
    stored = Stored(by_external_id, by_image, scenarios)
    _load_ratings(groups, stored)
    return stored


def _as_uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _load_ratings(groups: dict[tuple, Group], stored: Stored) -> None:
    """What the database holds for the plan's raters and the matched scenarios' ratings.

    A rater id is, in this order, the public id of an imported rater or of an annotator of
    this database (the ids its exports carry), or an imported rater's external id.
    """
    ids = sorted({rater for group in groups.values() for _, rater in group.ratings})
    uuids = {u: text for text in ids if (u := _as_uuid(text)) is not None}
    if not ids and not any(group.aggregates for group in groups.values()):
        return
    for chunk in _chunks(ids):
        for pk, external_id in ImportedRater.objects.filter(external_id__in=chunk).values_list("pk", "external_id"):
            stored.raters[external_id] = pk
    for chunk in _chunks(sorted(uuids)):
        for pk, public_id in ImportedRater.objects.filter(public_id__in=chunk).values_list("pk", "public_id"):
            stored.raters[uuids[str(public_id)]] = pk
        for pk, public_id in Annotator.objects.filter(public_id__in=chunk).values_list("pk", "public_id"):
            stored.annotators[uuids[str(public_id)]] = pk
    scenario_ids = sorted(row[0] for row in stored.scenarios.values())
    annotators = sorted(set(stored.annotators.values()))
    for chunk in _chunks(scenario_ids):
        for scenario, rater, score, modality, at, batch in ImportedRating.objects.filter(
            scenario_id__in=chunk
        ).values_list("scenario_id", "rater_id", "score", "modality", "rated_at", "batch_id"):
            stored.ratings[(scenario, rater)] = (score, modality, at, batch)
        for scenario, group, mean, raters, batch in ImportedAggregate.objects.filter(scenario_id__in=chunk).values_list(
            "scenario_id", "rater_group", "mean", "raters", "batch_id"
        ):
            stored.aggregates[(scenario, group)] = (mean, raters, batch)
        if annotators:
            stored.judged.update(
                Judgment.objects.filter(scenario_id__in=chunk, annotator_id__in=annotators)
                .order_by()
                .values_list("annotator_id", "scenario_id")
            )


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
        group.present_ratings, group.live_ratings, group.present_aggregates = set(), set(), set()
        if row is None:
            if group.context.refers_only:
                for number in group.rows:
                    errors.append(row_error(number, "external_id",
                                            f"Unknown context: external_id {shown(group.key[1])} is neither stored nor "
                                            "given with image_path and setting in this file, so its ratings have no "
                                            "scenario to belong to."))
                continue
            for folded, (scenario, number) in group.scenarios.items():
                if _is_canary_without_range(scenario):
                    errors.append(_new_canary_error(scenario, number))
                if not scenario.defines:
                    errors.extend(_unknown_scenario_errors(group, folded, scenario))
            errors.extend(_rating_errors(group, stored, {}))
            continue
        pk, _, sha, setting, source, origin, unreliable = row
        problems = []
        if group.context.refers_only:
            pass  # the row names its context only; nothing to compare
        elif sha != group.sha256:
            problems.append(("image_path", f"another image (sha256 {sha[:12]}...)"))
        if not group.context.refers_only and setting != group.context.setting:
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
                if not scenario.defines:
                    errors.extend(_unknown_scenario_errors(group, folded, scenario))
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
        errors.extend(_rating_errors(group, stored, {
            folded: stored.scenarios[(pk, folded)][0] for folded in group.scenarios if (pk, folded) in stored.scenarios
        }))
    return errors


def _unknown_scenario_errors(group: Group, folded: str, scenario: ScenarioIn) -> list[dict]:
    where = f"external_id {shown(group.key[1])}" if group.key[0] == "id" else "this context"
    return [
        row_error(number, scenario.field("text"),
                  f"Unknown scenario {shown(scenario.text)}: neither stored in the context ({where}) nor given "
                  "on a row with image_path and setting, so its ratings cannot be imported.")
        for number in group.rows_rating(folded)
    ]


def _rating_errors(group: Group, stored: Stored, scenario_pks: dict[str, int]) -> list[dict]:
    """Compare the group's ratings and aggregates with the stored ones (``scenario_pks``:
    casefolded text -> pk of the stored scenarios); mark those already present; return the
    errors of those that contradict what is stored."""
    errors = []
    for (folded, rater), (rating, number) in group.ratings.items():
        s_pk = scenario_pks.get(folded)
        annotator = stored.annotators.get(rater)
        if annotator is not None:
            if s_pk is not None and (annotator, s_pk) in stored.judged:
                group.live_ratings.add((folded, rater))
                continue
            errors.append(row_error(number, rating.field("rater"),
                                    f"{shown(rater)} is the public id of an annotator of this database who has not "
                                    "rated this scenario here; an import never adds judgments of annotators."))
            continue
        r_pk = stored.raters.get(rater)
        have = stored.ratings.get((s_pk, r_pk)) if s_pk is not None and r_pk is not None else None
        if have is None:
            continue
        score, modality, at, batch = have
        if (score, modality, at) == (rating.score, rating.modality, rating.rated_at):
            group.present_ratings.add((folded, rater))
            continue
        errors.append(row_error(number, rating.field("score"),
                                f"{shown(rater)}'s rating of this scenario is already stored (import #{batch}) with "
                                f"score {score}, modality {shown(modality or 'not known')}, time "
                                f"{shown(at.isoformat() if at else 'not known')}; the file says score {rating.score}, "
                                f"modality {shown(rating.modality or 'not known')}, time "
                                f"{shown(rating.rated_at.isoformat() if rating.rated_at else 'not known')}. "
                                "An import never changes stored ratings."))
    for (folded, group_name), (aggregate, number) in group.aggregates.items():
        s_pk = scenario_pks.get(folded)
        have = stored.aggregates.get((s_pk, group_name)) if s_pk is not None else None
        if have is None:
            continue
        mean, raters, batch = have
        if (mean, raters) == (aggregate.mean, aggregate.raters):
            group.present_aggregates.add((folded, group_name))
            continue
        errors.append(row_error(number, aggregate.field("mean"),
                                f"A mean of rater group {shown(group_name)} for this scenario is already stored "
                                f"(import #{batch}): {mean} of {raters} raters; the file says {aggregate.mean} of "
                                f"{aggregate.raters}. An import never changes stored ratings."))
    return errors
