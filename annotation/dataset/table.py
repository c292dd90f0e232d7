"""The dataset's judgments as numpy arrays, for the researchers' figures: ``load_rows`` (every
judgment row and imported rating in whole numbers, four queries) and ``judgment_table`` (the
judgments an export would use, chosen by ``annotation.dataset.selection``). Read by
annotation.research.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import connections
from django.db.models import Case, CharField, IntegerField, Q, Value, When
from django.db.models.functions import Cast, Coalesce, Replace, Substr

from annotation.models import Annotator, ImportedRating, Judgment, Scenario

from .format import MODALITIES, SOURCES
from .selection import select_judgments


# --- one snapshot of every judgment row --------------------------------------------------------
@dataclass(frozen=True)
class JudgmentRows:
    """Every judgment row and every scenario as numpy columns (``load_rows``).

    Judgment columns: ``annotator``, ``scenario`` (ids), ``score``, ``modality`` (0 text,
    1 image, 2 both), ``reconfirmed``, ``scored`` (had a model score), ``disagrees``
    (delta >= ``threshold``), ``canary_failed`` (``canary_passed`` false), ``version``
    (model version id, -1: none), ``day`` (UTC date as the number YYYYMMDD). Scenario
    columns, sorted by id: ``scenario_ids``, ``scenario_context``, ``scenario_batch`` (-1:
    no batch), ``scenario_label`` (NaN: none), ``scenario_canary``, ``scenario_count``
    (initial judgments, the assignment's counter), ``scenario_open`` (not retired, context
    active, review status "accepted": the ones that may be given out). ``screened``: ids
    of the annotators screened out now.

    Imported ratings (``ImportedRating``) are not judgments of annotators and are not in
    the judgment columns, so the process figures (revision, disagreement, progress) never
    see them; they are in the ``imported_*`` columns: ``imported_rater`` (imported rater
    ids, a number space of their own), ``imported_scenario``, ``imported_score``,
    ``imported_modality`` (0 text, 1 image, 2 both, -1 not known). ``judgment_table``
    chooses them on purpose, as the export does.
    """

    threshold: float
    annotator: np.ndarray
    scenario: np.ndarray
    score: np.ndarray
    modality: np.ndarray
    reconfirmed: np.ndarray
    scored: np.ndarray
    disagrees: np.ndarray
    canary_failed: np.ndarray
    version: np.ndarray
    day: np.ndarray
    scenario_ids: np.ndarray
    scenario_context: np.ndarray
    scenario_batch: np.ndarray
    scenario_label: np.ndarray
    scenario_canary: np.ndarray
    scenario_count: np.ndarray
    scenario_open: np.ndarray
    screened: np.ndarray
    imported_rater: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    imported_scenario: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    imported_score: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    imported_modality: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def scenario_index(self, scenario_ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.scenario_ids, scenario_ids)


_NO_LABEL = 9  # stands for NULL in the integer scenario query


def _int_matrix(queryset, width: int) -> np.ndarray:
    """The rows of a values_list queryset of whole numbers as an n x width int64 array.

    The SQL is the queryset's own; the rows are read with one ``fetchall`` instead of
    Django's row iterator, which costs about as much again as the query at 100,000 rows.
    """
    sql, params = queryset.query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(sql, params)
        data = cursor.fetchall()
    return np.array(data, dtype=np.int64).reshape(-1, width)


def _flag(condition: Q, value: int) -> Case:
    return Case(When(condition, then=Value(value)), default=Value(0), output_field=IntegerField())


def load_rows() -> JudgmentRows:
    """Read every judgment row, the scenario columns, the screened-out annotators and the
    imported ratings.

    Four queries: every judgment row with one ``values_list`` query without joins, in whole
    numbers only (the database encodes modality, phase, "has a model score", "is a
    disagreement", "failed its canary" and the UTC day), one for the scenario columns, one
    for the screened-out annotators, one for the imported ratings: about 0.5 s for MM-SCALE's 97,000 judgments on SQLite.
    Everything else is numpy on those arrays.
    """
    threshold = settings.MORALE_DISAGREEMENT_THRESHOLD
    # modality + 3 reconfirmed + 6 scored + 12 disagreement + 24 failed canary, all decided by the database
    code = (
        Case(*(When(modality=m, then=Value(i)) for i, m in enumerate(MODALITIES)), output_field=IntegerField())
        + _flag(Q(phase=Judgment.Phase.RECONFIRMED), 3)
        + _flag(Q(delta__isnull=False), 6)
        + _flag(Q(delta__gte=threshold), 12)
        + _flag(Q(canary_passed=False), 24)
    )
    # YYYYMMDD of created_at as text: Django's connections run in UTC, and unlike
    # TruncDate this needs no Python function per row on SQLite.
    day = Cast(
        Replace(Substr(Cast("created_at", output_field=CharField()), 1, 10), Value("-"), Value("")),
        output_field=IntegerField(),
    )
    rows = _int_matrix(
        Judgment.objects.order_by()
        .annotate(code=code, day=day, version=Coalesce("model_version_id", Value(-1)))
        .values_list("annotator_id", "scenario_id", "score", "code", "version", "day"),
        6,
    )
    scenarios = _int_matrix(
        Scenario.objects.order_by("pk")
        .annotate(
            batch=Coalesce("context__import_batch_id", Value(-1)),
            label=Coalesce("text_only_label", Value(_NO_LABEL)),
            canary=_flag(Q(is_canary=True), 1),
            open=_flag(Q(is_retired=False, context__is_active=True, review_status=Scenario.Review.ACCEPTED), 1),
        )
        .values_list("pk", "context_id", "batch", "label", "canary", "judgment_count", "open"),
        7,
    )
    screened = Annotator.objects.filter(status=Annotator.Status.SCREENED_OUT).values_list("pk", flat=True)
    imported = _int_matrix(
        ImportedRating.objects.order_by()
        .annotate(code=Case(*(When(modality=m, then=Value(i)) for i, m in enumerate(MODALITIES)),
                            default=Value(-1), output_field=IntegerField()))
        .values_list("rater_id", "scenario_id", "score", "code"),
        4,
    )
    code = rows[:, 3]
    labels = scenarios[:, 3].astype(float)
    labels[scenarios[:, 3] == _NO_LABEL] = np.nan
    return JudgmentRows(
        threshold=threshold,
        annotator=rows[:, 0].copy(),
        scenario=rows[:, 1].copy(),
        score=rows[:, 2].copy(),
        modality=code % 3,
        reconfirmed=(code // 3) % 2 == 1,
        scored=(code // 6) % 2 == 1,
        disagrees=(code // 12) % 2 == 1,
        canary_failed=code >= 24,
        version=rows[:, 4].copy(),
        day=rows[:, 5].copy(),
        scenario_ids=scenarios[:, 0].copy(),
        scenario_context=scenarios[:, 1].copy(),
        scenario_batch=scenarios[:, 2].copy(),
        scenario_label=labels,
        scenario_canary=scenarios[:, 4] == 1,
        scenario_count=scenarios[:, 5].copy(),
        scenario_open=scenarios[:, 6] == 1,
        screened=np.array(sorted(screened), dtype=np.int64),
        imported_rater=imported[:, 0].copy(),
        imported_scenario=imported[:, 1].copy(),
        imported_score=imported[:, 2].copy(),
        imported_modality=imported[:, 3].copy(),
    )


# --- the judgment table ---------------------------------------------------------------------
@dataclass(frozen=True)
class JudgmentTable:
    """The dataset's judgments as numpy arrays: one row per (annotator, scenario).

    Row arrays (length = judgments): ``annotator`` (annotator id; an imported rater's id
    negated), ``unit`` (index into the unit arrays), ``score`` (1-5), ``modality`` (0 text,
    1 image, 2 both, -1 not known: imported ratings only), ``imported``.
    Unit arrays (length = scenarios with at least one judgment, in scenario-id order):
    ``scenario_ids``, ``context_ids``, ``batch_ids`` (-1: no batch), ``labels`` (the
    text-only label as a float, NaN when none).
    """

    source: str
    include_screened: bool
    annotator: np.ndarray
    unit: np.ndarray
    score: np.ndarray
    modality: np.ndarray
    scenario_ids: np.ndarray
    context_ids: np.ndarray
    batch_ids: np.ndarray
    labels: np.ndarray
    include_canaries: bool = False
    imported: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    include_imported: bool = False

    @property
    def n_units(self) -> int:
        return int(self.scenario_ids.size)

    @property
    def n_judgments(self) -> int:
        return int(self.score.size)

    def unit_counts(self) -> np.ndarray:
        return np.bincount(self.unit, minlength=self.n_units)

    def score_counts(self) -> np.ndarray:
        """units x 5 matrix: how many judgments gave each score (Krippendorff's value counts)."""
        flat = np.bincount(self.unit * 5 + (self.score - 1), minlength=self.n_units * 5)
        return flat.reshape(self.n_units, 5)

    def modality_counts(self) -> np.ndarray:
        """units x 3 matrix of modality votes (text, image, both); unknown modalities vote for none."""
        known = self.modality >= 0
        flat = np.bincount(self.unit[known] * 3 + self.modality[known], minlength=self.n_units * 3)
        return flat.reshape(self.n_units, 3)


def judgment_table(
    *,
    source: str | None = None,
    include_screened: bool | None = None,
    include_canaries: bool = False,
    include_imported: bool | None = None,
    rows: JudgmentRows | None = None,
) -> JudgmentTable:
    """The judgments an export with these options would use, from ``rows`` (default:
    ``load_rows()``), chosen by ``select_judgments`` as the export chooses them.

    ``source``, ``include_screened`` and ``include_imported`` default to
    ``MORALE_EXPORT_SOURCE``, ``MORALE_EXPORT_INCLUDE_SCREENED`` and
    ``MORALE_EXPORT_INCLUDE_IMPORTED``: the figures see the imported ratings an export
    has (single ratings only: a pre-aggregated score has no single values to agree on). Canaries are attention checks, not data: the
    researchers' figures leave them out (``include_canaries=False``, whatever the export
    setting says); with ``True``, failed canary judgments are left out as in the export.
    """
    source = source or settings.MORALE_EXPORT_SOURCE
    if source not in SOURCES:
        raise ValueError(f"source must be 'reconfirmed' or 'initial', not {source!r}")
    if include_screened is None:
        include_screened = settings.MORALE_EXPORT_INCLUDE_SCREENED
    if include_imported is None:
        include_imported = settings.MORALE_EXPORT_INCLUDE_IMPORTED
    rows = rows if rows is not None else load_rows()
    n_live, n_imported = rows.annotator.size, rows.imported_rater.size
    annotator = np.concatenate([rows.annotator, rows.imported_rater])
    scenario = np.concatenate([rows.scenario, rows.imported_scenario])
    imported = np.concatenate([np.zeros(n_live, dtype=bool), np.ones(n_imported, dtype=bool)])
    no = np.zeros(n_imported, dtype=bool)  # imported ratings: never reconfirmed, screened or failed canaries
    selection = select_judgments(
        annotator=annotator,
        scenario=scenario,
        reconfirmed=np.concatenate([rows.reconfirmed, no]),
        screened=np.concatenate([np.isin(rows.annotator, rows.screened), no]),
        canary=rows.scenario_canary[rows.scenario_index(scenario)],
        canary_failed=np.concatenate([rows.canary_failed, no]),
        imported=imported,
        source=source,
        include_screened=bool(include_screened),
        include_canaries=include_canaries,
        include_imported=bool(include_imported),
    )
    shown_id = np.where(imported, -annotator, annotator)
    chosen = np.flatnonzero(selection.counted)
    chosen = chosen[np.lexsort((shown_id[chosen], scenario[chosen]))]  # by scenario, then annotator

    scenario_ids, unit = np.unique(scenario[chosen], return_inverse=True)
    meta = rows.scenario_index(scenario_ids)
    return JudgmentTable(
        source=source,
        include_screened=bool(include_screened),
        include_canaries=bool(include_canaries),
        include_imported=bool(include_imported),
        annotator=shown_id[chosen],
        imported=imported[chosen],
        unit=unit.astype(np.int64).reshape(-1),
        score=np.concatenate([rows.score, rows.imported_score])[chosen],
        modality=np.concatenate([rows.modality, rows.imported_modality])[chosen],
        scenario_ids=scenario_ids,
        context_ids=rows.scenario_context[meta],
        batch_ids=rows.scenario_batch[meta],
        labels=rows.scenario_label[meta],
    )
