"""Agreement figures over the dataset's judgments: Krippendorff's alpha, modality agreement
and the rating distribution (paper, sections 3.2-3.4); plain JSON-ready dicts.

Definitions, and the sections the judgment selection below cites ("How the data is
read", "Which judgments"): docs/research-figures.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import krippendorff
import numpy as np
from django.conf import settings
from django.db import connections
from django.db.models import Case, CharField, IntegerField, Q, Value, When
from django.db.models.functions import Cast, Coalesce, Replace, Substr

from ..models import Annotator, ImportBatch, Judgment, Scenario
from .numbers import json_number, ratio

MODALITIES = ("text", "image", "both")
SCORES = (1, 2, 3, 4, 5)
_BOTH = MODALITIES.index("both")
NO_BATCH = "no batch"


# Moving to annotation/dataset (judgment selection); kept here until the merge.
# --- one snapshot of every judgment row --------------------------------------------------------
@dataclass(frozen=True)
class JudgmentRows:
    """Every judgment row and every scenario as numpy columns (``load_rows``).

    Judgment columns: ``annotator``, ``scenario`` (ids), ``score``, ``modality`` (0 text,
    1 image, 2 both), ``reconfirmed``, ``scored`` (had a model score), ``disagrees``
    (delta >= ``threshold``), ``version`` (model version id, -1: none), ``day`` (UTC
    date as the number YYYYMMDD). Scenario columns, sorted by id: ``scenario_ids``,
    ``scenario_context``, ``scenario_batch`` (-1: no batch), ``scenario_label`` (NaN:
    none), ``scenario_canary``, ``scenario_count`` (initial judgments, the assignment's
    counter), ``scenario_open`` (not retired, context active). ``screened``: ids of the
    annotators screened out now.
    """

    threshold: float
    annotator: np.ndarray
    scenario: np.ndarray
    score: np.ndarray
    modality: np.ndarray
    reconfirmed: np.ndarray
    scored: np.ndarray
    disagrees: np.ndarray
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
    """Read every judgment row, the scenario columns and the screened-out annotators
    (three queries; module docstring, "How the data is read")."""
    threshold = settings.MORALE_DISAGREEMENT_THRESHOLD
    # modality + 3 reconfirmed + 6 scored + 12 disagreement, all decided by the database
    code = (
        Case(*(When(modality=m, then=Value(i)) for i, m in enumerate(MODALITIES)), output_field=IntegerField())
        + _flag(Q(phase=Judgment.Phase.RECONFIRMED), 3)
        + _flag(Q(delta__isnull=False), 6)
        + _flag(Q(delta__gte=threshold), 12)
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
            open=_flag(Q(is_retired=False, context__is_active=True), 1),
        )
        .values_list("pk", "context_id", "batch", "label", "canary", "judgment_count", "open"),
        7,
    )
    screened = Annotator.objects.filter(status=Annotator.Status.SCREENED_OUT).values_list("pk", flat=True)
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
        disagrees=code >= 12,
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
    )


# --- the judgment table ---------------------------------------------------------------------
@dataclass(frozen=True)
class JudgmentTable:
    """The dataset's judgments as numpy arrays: one row per (annotator, scenario).

    Row arrays (length = judgments): ``annotator`` (annotator id), ``unit`` (index into
    the unit arrays), ``score`` (1-5), ``modality`` (0 text, 1 image, 2 both).
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
        """units x 3 matrix of modality votes (text, image, both)."""
        flat = np.bincount(self.unit * 3 + self.modality, minlength=self.n_units * 3)
        return flat.reshape(self.n_units, 3)


def _pair_key(annotator: np.ndarray, scenario: np.ndarray) -> np.ndarray:
    width = int(annotator.max()) + 1 if annotator.size else 1
    return scenario * width + annotator


def judgment_table(
    *, source: str | None = None, include_screened: bool | None = None, rows: JudgmentRows | None = None
) -> JudgmentTable:
    """The dataset's judgments (module docstring, "Which judgments") from ``rows``
    (default: ``load_rows()``).

    ``source`` and ``include_screened`` default to ``MORALE_EXPORT_SOURCE`` and
    ``MORALE_EXPORT_INCLUDE_SCREENED``.
    """
    source = source or settings.MORALE_EXPORT_SOURCE
    if source not in ("reconfirmed", "initial"):
        raise ValueError(f"source must be 'reconfirmed' or 'initial', not {source!r}")
    if include_screened is None:
        include_screened = settings.MORALE_EXPORT_INCLUDE_SCREENED
    rows = rows if rows is not None else load_rows()
    keep = ~rows.scenario_canary[rows.scenario_index(rows.scenario)]
    if not include_screened:
        keep &= ~np.isin(rows.annotator, rows.screened)
    if source == "initial":
        keep &= ~rows.reconfirmed
    picked = np.flatnonzero(keep)
    # One row per (scenario, annotator): the reconfirmed one first, so it wins when the
    # source says "reconfirmed" (with "initial" there is none left).
    key = _pair_key(rows.annotator[picked], rows.scenario[picked])
    order = np.lexsort((~rows.reconfirmed[picked], key))
    key_sorted = key[order]
    first = np.ones(key_sorted.size, dtype=bool)
    first[1:] = key_sorted[1:] != key_sorted[:-1]
    chosen = picked[order[first]]  # sorted by scenario, then annotator

    scenario_ids, unit = np.unique(rows.scenario[chosen], return_inverse=True)
    meta = rows.scenario_index(scenario_ids)
    return JudgmentTable(
        source=source,
        include_screened=bool(include_screened),
        annotator=rows.annotator[chosen],
        unit=unit.astype(np.int64).reshape(-1),
        score=rows.score[chosen],
        modality=rows.modality[chosen],
        scenario_ids=scenario_ids,
        context_ids=rows.scenario_context[meta],
        batch_ids=rows.scenario_batch[meta],
        labels=rows.scenario_label[meta],
    )


# --- Krippendorff's alpha --------------------------------------------------------------------
def alpha_from_counts(value_counts: np.ndarray, *, level: str, value_domain) -> float | None:
    """Krippendorff's alpha (``krippendorff`` package) of a units x values count matrix.

    Units with fewer than two values are not pairable and are left out. None when alpha
    is undefined: no pairable values, or one value throughout (no expected disagreement).
    """
    counts = np.asarray(value_counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return None
    counts = counts[counts.sum(axis=1) >= 2]
    if counts.shape[0] == 0 or np.count_nonzero(counts.sum(axis=0)) < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        value = krippendorff.alpha(value_counts=counts, value_domain=list(value_domain), level_of_measurement=level)
    return json_number(value)


def _alphas(score_counts: np.ndarray, modality_counts: np.ndarray) -> dict:
    pairable = score_counts.sum(axis=1) >= 2
    return {
        "interval": alpha_from_counts(score_counts, level="interval", value_domain=SCORES),
        "ordinal": alpha_from_counts(score_counts, level="ordinal", value_domain=SCORES),
        "nominal_modality": alpha_from_counts(modality_counts, level="nominal", value_domain=MODALITIES),
        "units": int(pairable.sum()),
        "judgments": int(score_counts[pairable].sum()),
    }


def _batch_labels(batch_ids) -> dict[int, str]:
    ids = [int(b) for b in batch_ids if b >= 0]
    return {pk: f"#{pk} {name}" for pk, name in ImportBatch.objects.filter(pk__in=ids).values_list("pk", "file_name")}


def krippendorff_alphas(table: JudgmentTable | None = None) -> dict:
    """Alpha overall and per context batch (paper: 0.74 scores, 0.71 modality).

    ``{"overall": {"interval", "ordinal", "nominal_modality", "units", "judgments"},
    "by_batch": [{"batch_id" (None: no batch), "label", ...same keys}]}``, batches in id
    order after the "no batch" group.
    """
    table = table if table is not None else judgment_table()
    scores, modalities = table.score_counts(), table.modality_counts()
    result = {"overall": _alphas(scores, modalities), "by_batch": []}
    batches = np.unique(table.batch_ids)
    labels = _batch_labels(batches)
    for b in batches:
        mask = table.batch_ids == b
        entry = {
            "batch_id": None if b < 0 else int(b),
            "label": NO_BATCH if b < 0 else labels.get(int(b), f"#{int(b)}"),
        }
        entry.update(_alphas(scores[mask], modalities[mask]))
        result["by_batch"].append(entry)
    return result


# --- modality -------------------------------------------------------------------------------
def majority_modality(votes: np.ndarray) -> np.ndarray:
    """Per row of a units x 3 vote matrix: the index of the most-voted modality, ties "both"."""
    top = votes.max(axis=1, keepdims=True)
    leaders = (votes == top).sum(axis=1)
    return np.where(leaders == 1, votes.argmax(axis=1), _BOTH)


def modality_agreement(table: JudgmentTable | None = None) -> dict:
    """Share of raters who name the scenario's majority modality, by majority modality.

    Over scenarios with at least two judgments. ``{"overall": share, "by_modality":
    {m: {"share", "units", "judgments", "agreeing"}}, "units", "tied_units"}``.
    """
    table = table if table is not None else judgment_table()
    votes = table.modality_counts()
    n = votes.sum(axis=1)
    votes, n = votes[n >= 2], n[n >= 2]
    top = votes.max(axis=1) if votes.size else np.zeros(0, dtype=np.int64)
    tied = (votes == top[:, None]).sum(axis=1) > 1 if votes.size else np.zeros(0, dtype=bool)
    majority = majority_modality(votes) if votes.size else np.zeros(0, dtype=np.int64)
    agreeing = votes[np.arange(votes.shape[0]), majority] if votes.size else np.zeros(0, dtype=np.int64)
    by_modality = {}
    for i, m in enumerate(MODALITIES):
        mask = majority == i
        by_modality[m] = {
            "share": ratio(agreeing[mask].sum(), n[mask].sum()),
            "units": int(mask.sum()),
            "judgments": int(n[mask].sum()),
            "agreeing": int(agreeing[mask].sum()),
        }
    return {
        "overall": ratio(agreeing.sum(), n.sum()),
        "by_modality": by_modality,
        "units": int(n.size),
        "tied_units": int(tied.sum()),
    }


def rating_distribution(table: JudgmentTable | None = None) -> dict:
    """Counts of each score by the judgment's modality (paper, fig. 5), and modality shares.

    ``{"counts": {m: [n of score 1, ..., n of score 5]}, "modality_share": {m: share},
    "total": n}``.
    """
    table = table if table is not None else judgment_table()
    flat = np.bincount(table.modality * 5 + (table.score - 1), minlength=15).reshape(3, 5)
    total = int(flat.sum())
    return {
        "counts": {m: [int(v) for v in flat[i]] for i, m in enumerate(MODALITIES)},
        "modality_share": {m: ratio(flat[i].sum(), total) for i, m in enumerate(MODALITIES)},
        "total": total,
    }
