"""Agreement and analysis figures (annotation.analysis), each against an independent computation.

Krippendorff's alpha is checked against the worked example of Krippendorff (2011,
"Computing Krippendorff's Alpha-Reliability", section E: nominal 0.743, ordinal 0.815,
interval 0.849) and against a brute-force pairable-values implementation written here
from that paper; the other figures against counts made by hand.
"""

import itertools
import json
import math
import random
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timezone as dt_timezone
from unittest import mock

import numpy as np
import pytest
from django.core.cache import cache
from django.utils import timezone

from annotation import analysis, quality, services
from annotation.models import Annotator, Assignment, Context, ImportBatch, Judgment
from modelloop.models import ModelVersion
from tests.factories import AnnotatorFactory, current_version, make_canary, make_context
from training.models import TrainingRun

NAN = float("nan")
# Krippendorff (2011), section E: 4 observers x 12 units, values 1-5, "." missing.
K2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]


# --- an independent alpha: pairable values and the coincidence matrix -------------------------
def brute_alpha(units: list[list], level: str, domain: list) -> float:
    """Krippendorff's alpha from first principles: every ordered pair of values within a
    unit counts 1/(m_u - 1) in the coincidence matrix; alpha = 1 - (n - 1) * sum(o * d2) /
    sum(n_c * n_k * d2)."""
    o = defaultdict(float)
    for values in units:
        m = len(values)
        if m < 2:
            continue
        for i, j in itertools.permutations(range(m), 2):
            o[values[i], values[j]] += 1 / (m - 1)
    n_c = {c: sum(o[c, k] for k in domain) for c in domain}
    n = sum(n_c.values())

    def d2(c, k):
        if level == "nominal":
            return 0.0 if c == k else 1.0
        if level == "interval":
            return float(c - k) ** 2
        lo, hi = sorted((domain.index(c), domain.index(k)))
        return (sum(n_c[domain[g]] for g in range(lo, hi + 1)) - (n_c[c] + n_c[k]) / 2) ** 2

    observed = sum(o[c, k] * d2(c, k) for c in domain for k in domain)
    expected = sum(n_c[c] * n_c[k] * d2(c, k) for c in domain for k in domain)
    return 1 - (n - 1) * observed / expected


def counts_from(units: list[list], domain: list) -> np.ndarray:
    return np.array([[values.count(v) for v in domain] for values in units])


def k2011_units():
    return [[row[u] for row in K2011 if not math.isnan(row[u])] for u in range(12)]


@pytest.mark.parametrize("level,expected", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_alpha_matches_krippendorffs_worked_example(level, expected):
    units = k2011_units()
    got = analysis.alpha_from_counts(counts_from(units, [1, 2, 3, 4, 5]), level=level, value_domain=[1, 2, 3, 4, 5])
    assert round(got, 3) == expected
    assert got == pytest.approx(brute_alpha(units, level, [1, 2, 3, 4, 5]), abs=1e-12)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_alpha_matches_brute_force_on_random_data(level):
    rng = random.Random(7)
    units = []
    for _ in range(60):
        base = rng.randint(1, 5)
        units.append([min(5, max(1, base + rng.choice([-2, -1, 0, 0, 0, 1]))) for _ in range(rng.randint(1, 4))])
    got = analysis.alpha_from_counts(counts_from(units, [1, 2, 3, 4, 5]), level=level, value_domain=[1, 2, 3, 4, 5])
    assert got == pytest.approx(brute_alpha(units, level, [1, 2, 3, 4, 5]), abs=1e-10)


def test_alpha_is_none_when_undefined():
    assert analysis.alpha_from_counts(np.zeros((0, 5)), level="interval", value_domain=[1, 2, 3, 4, 5]) is None
    one_rater = counts_from([[3], [4]], [1, 2, 3, 4, 5])
    assert analysis.alpha_from_counts(one_rater, level="interval", value_domain=[1, 2, 3, 4, 5]) is None
    all_same = counts_from([[3, 3], [3, 3, 3]], [1, 2, 3, 4, 5])
    assert analysis.alpha_from_counts(all_same, level="ordinal", value_domain=[1, 2, 3, 4, 5]) is None


# --- data in the database -----------------------------------------------------------------------
def page_for(annotator, context):
    return Assignment.objects.create(
        annotator=annotator, context=context, status=Assignment.Status.COMPLETED, expires_at=timezone.now()
    )


def judge(annotator, scenario, score, modality="text", *, page=None, model_score=None, version=None, seconds=10.0):
    return Judgment.objects.create(
        annotator=annotator,
        scenario=scenario,
        assignment=page or page_for(annotator, scenario.context),
        score=score,
        modality=modality,
        model_version=(version or current_version()) if model_score is not None else None,
        model_score=model_score,
        delta=abs(score - model_score) if model_score is not None else None,
        canary_passed=scenario.canary_accepts(score) if scenario.is_canary else None,
        seconds_spent=seconds,
        client_token=uuid.uuid4(),
    )


def reconfirm(initial, score, modality=None, model_score=None):
    return Judgment.objects.create(
        annotator=initial.annotator,
        scenario=initial.scenario,
        assignment=initial.assignment,
        score=score,
        modality=modality or initial.modality,
        phase=Judgment.Phase.RECONFIRMED,
        revises=initial,
        model_score=model_score if model_score is not None else initial.model_score,
        model_version=initial.model_version,
        client_token=uuid.uuid4(),
    )


def scenario_in(context, k, label=None):
    return services.scenario_create(context=context, text=f"action {k} in {context.setting}", text_only_label=label)


def rated(matrix, *, labels=None, per_context=3, batch=None):
    """matrix[i][u] = (score, modality) or None: annotator i on unit u. Returns (scenarios, annotators)."""
    n_units = len(matrix[0])
    scenarios = []
    for start in range(0, n_units, per_context):
        context = make_context()
        if batch is not None:
            Context.objects.filter(pk=context.pk).update(import_batch=batch)
        for u in range(start, min(n_units, start + per_context)):
            scenarios.append(scenario_in(context, u, None if labels is None else labels[u]))
    annotators = [AnnotatorFactory() for _ in matrix]
    for annotator, row in zip(annotators, matrix):
        for scenario, cell in zip(scenarios, row):
            if cell is not None:
                judge(annotator, scenario, *cell)
    return scenarios, annotators


def units_of(matrix, index):
    return [[row[u][index] for row in matrix if row[u] is not None] for u in range(len(matrix[0]))]


def k2011_matrix(modalities=("text", "image", "both")):
    rng = random.Random(3)
    return [
        [None if math.isnan(v) else (int(v), rng.choice(modalities)) for v in row] for row in K2011
    ]


# --- alpha from the database ---------------------------------------------------------------------
@pytest.mark.django_db
def test_krippendorff_alphas_overall_match_the_worked_example_and_brute_force():
    matrix = k2011_matrix()
    rated(matrix)
    result = analysis.krippendorff_alphas()
    overall = result["overall"]
    assert round(overall["interval"], 3) == 0.849 and round(overall["ordinal"], 3) == 0.815
    modality_units = units_of(matrix, 1)
    assert overall["nominal_modality"] == pytest.approx(brute_alpha(modality_units, "nominal", ["text", "image", "both"]))
    assert overall["units"] == 11  # unit 12 has a single value: not pairable
    assert overall["judgments"] == sum(len(u) for u in units_of(matrix, 0) if len(u) >= 2)
    assert json.loads(json.dumps(result)) == result


@pytest.mark.django_db
def test_krippendorff_alphas_per_context_batch_with_a_no_batch_group():
    rng = random.Random(11)
    first = [[(rng.randint(2, 4), rng.choice(["text", "image"])) for _ in range(6)] for _ in range(3)]
    second = [[(rng.randint(1, 5), rng.choice(["text", "both"])) for _ in range(6)] for _ in range(3)]
    loose = [[(s, "image") for s in (1, 2, 5, 4, 3, 3)] for _ in range(2)]
    batch_a = ImportBatch.objects.create(file_name="a.jsonl", file_sha256="a" * 64, format="jsonl", status="done")
    batch_b = ImportBatch.objects.create(file_name="b.csv", file_sha256="b" * 64, format="csv", status="done")
    rated(first, batch=batch_a)
    rated(second, batch=batch_b)
    rated(loose)
    result = analysis.krippendorff_alphas()
    by_label = {b["label"]: b for b in result["by_batch"]}
    assert list(by_label) == ["no batch", f"#{batch_a.pk} a.jsonl", f"#{batch_b.pk} b.csv"]
    for matrix, label in [(first, f"#{batch_a.pk} a.jsonl"), (second, f"#{batch_b.pk} b.csv"), (loose, "no batch")]:
        entry = by_label[label]
        assert entry["interval"] == pytest.approx(brute_alpha(units_of(matrix, 0), "interval", [1, 2, 3, 4, 5]))
        assert entry["ordinal"] == pytest.approx(brute_alpha(units_of(matrix, 0), "ordinal", [1, 2, 3, 4, 5]))
        assert entry["units"] == 6
    assert by_label["no batch"]["batch_id"] is None and by_label["no batch"]["nominal_modality"] is None  # all "image"
    everything = [*units_of(first, 0), *units_of(second, 0), *units_of(loose, 0)]
    assert result["overall"]["interval"] == pytest.approx(brute_alpha(everything, "interval", [1, 2, 3, 4, 5]))


@pytest.mark.django_db
def test_table_uses_reconfirmed_answers_and_leaves_out_screened_annotators_and_canaries():
    context = make_context()
    scenario = scenario_in(context, 0)
    canary = make_canary(context, 1, 2)
    a, b, c = AnnotatorFactory(), AnnotatorFactory(), AnnotatorFactory()
    first = judge(a, scenario, 2, "text", model_score=4.5)
    reconfirm(first, 4, "both")
    judge(b, scenario, 5, "image")
    judge(c, scenario, 1, "image")
    judge(a, canary, 1, "text")
    quality.annotator_screen_out(c, by=None, reasons=["test"])

    table = analysis.judgment_table()
    assert table.scenario_ids.tolist() == [scenario.pk]
    assert sorted(zip(table.annotator.tolist(), table.score.tolist())) == [(a.pk, 4), (b.pk, 5)]
    initial = analysis.judgment_table(source="initial")
    assert sorted(initial.score.tolist()) == [2, 5]
    with_screened = analysis.judgment_table(include_screened=True)
    assert sorted(with_screened.score.tolist()) == [1, 4, 5]


@pytest.mark.django_db
def test_table_follows_the_export_source_setting(settings):
    context = make_context()
    scenario = scenario_in(context, 0)
    first = judge(AnnotatorFactory(), scenario, 2, model_score=4.5)
    reconfirm(first, 4)
    settings.MORALE_EXPORT_SOURCE = "initial"
    assert analysis.judgment_table().score.tolist() == [2]
    settings.MORALE_EXPORT_SOURCE = "reconfirmed"
    assert analysis.judgment_table().score.tolist() == [4]


# --- modality, ratings, shifts --------------------------------------------------------------------
@pytest.mark.django_db
def test_modality_agreement_by_majority_modality_against_hand_counts():
    matrix = [
        [(3, "text"), (4, "image"), (2, "image"), (5, "text"), (3, "both")],
        [(3, "text"), (4, "image"), (2, "text"), (5, "image"), (3, "text")],
        [(3, "image"), (4, "image"), (2, "image"), (5, "both"), None],
    ]
    rated(matrix, per_context=5)
    # unit 0: text 2/3 -> text; unit 1: image 3/3; unit 2: image 2/3; unit 3: three-way tie -> both (1/3);
    # unit 4: text 1, both 1 -> tie -> both (1/2)
    result = analysis.modality_agreement()
    assert result["by_modality"]["text"] == {"share": 2 / 3, "units": 1, "judgments": 3, "agreeing": 2}
    assert result["by_modality"]["image"] == {"share": 5 / 6, "units": 2, "judgments": 6, "agreeing": 5}
    assert result["by_modality"]["both"] == {"share": 2 / 5, "units": 2, "judgments": 5, "agreeing": 2}
    assert result["overall"] == pytest.approx(9 / 14)
    assert result["units"] == 5 and result["tied_units"] == 2


@pytest.mark.django_db
def test_rating_distribution_by_modality_against_hand_counts():
    rng = random.Random(5)
    matrix = [[(rng.randint(1, 5), rng.choice(["text", "image", "both"])) for _ in range(9)] for _ in range(3)]
    rated(matrix)
    result = analysis.rating_distribution()
    expected = Counter(cell for row in matrix for cell in row)
    for modality in ("text", "image", "both"):
        assert result["counts"][modality] == [expected[(s, modality)] for s in range(1, 6)]
    assert result["total"] == 27
    assert result["modality_share"]["image"] == pytest.approx(sum(v for (s, m), v in expected.items() if m == "image") / 27)


@pytest.mark.django_db
def test_judgment_shifts_against_text_only_labels_by_modality():
    # label +1 -> 5, 0 -> 3, -1 -> 1 (default mapping)
    matrix = [
        [(1, "image"), (5, "text"), (4, "both"), (3, "image"), (2, "text"), (5, "image")],
        [(2, "image"), (5, "text"), (4, "both"), (4, "image"), (3, "text"), (5, "image")],
        [(1, "text"), (4, "text"), (4, "image"), (2, "image"), (3, "text"), (4, "image")],
    ]
    labels = [1, 1, -1, 0, 0, None]
    rated(matrix, labels=labels)
    # unit 0: mean 4/3 - 5 = -3.67 down, extreme, majority image
    # unit 1: mean 14/3 - 5 = -0.33 neutral, text
    # unit 2: mean 4 - 1 = +3 up, extreme, majority both
    # unit 3: mean 3 - 3 = 0 neutral, image
    # unit 4: mean 8/3 - 3 = -0.33 neutral, text;   unit 5: no label, not counted
    result = analysis.judgment_shifts()
    assert result["mapping"] == {"-1": 1.0, "0": 3.0, "1": 5.0}
    image, text, both = (result["by_modality"][m] for m in ("image", "text", "both"))
    assert (image["up"], image["neutral"], image["down"], image["extreme"]) == (0, 1, 1, 1)
    assert image["mean_shift"] == pytest.approx(((4 / 3 - 5) + 0) / 2)
    assert (text["up"], text["neutral"], text["down"], text["extreme"]) == (0, 2, 0, 0)
    assert (both["up"], both["neutral"], both["down"], both["extreme"]) == (1, 0, 0, 1)
    assert result["overall"]["total"] == 5 and result["overall"]["divergent_share"] == pytest.approx(2 / 5)
    assert result["by_label"]["1"]["image"]["down"] == 1 and result["by_label"]["-1"]["both"]["extreme_up"] == 1


@pytest.mark.django_db
def test_judgment_shift_mapping_is_a_setting(settings):
    settings.MORALE_TEXT_LABEL_SCORES = [2.0, 3.0, 4.0]
    rated([[(1, "image")], [(1, "image")]], labels=[1])
    result = analysis.judgment_shifts()
    assert result["by_modality"]["image"]["extreme_down"] == 1  # 1 - 4 = -3
    settings.MORALE_TEXT_LABEL_SCORES = [1.0, 3.0, 6.0]
    with pytest.raises(ValueError):
        analysis.judgment_shifts()


@pytest.mark.django_db
def test_item_dispersion_flags_scenarios_above_the_sd_limit():
    matrix = [[(1, "text"), (3, "text"), (2, "text")], [(5, "text"), (4, "text"), None], [(3, "text"), (3, "text"), None]]
    scenarios, _ = rated(matrix)
    result = analysis.item_dispersion()
    sd0 = float(np.std([1, 5, 3], ddof=1))  # 2.0 > 1.2
    sd1 = float(np.std([3, 4, 3], ddof=1))  # 0.577
    assert result["flagged_ids"] == [scenarios[0].pk] and result["flagged_sd"] == [pytest.approx(sd0)]
    assert result["scenarios"] == 3 and result["with_sd"] == 2 and result["share"] == pytest.approx(1 / 3)
    assert sd1 < 1.2
    assert analysis.item_dispersion(max_sd=0.5)["flagged"] == 2
    assert analysis.item_dispersion(max_sd=2.0)["flagged"] == 0  # strictly above, as the export


# --- process figures ----------------------------------------------------------------------------
@pytest.mark.django_db
def test_revision_rates_per_annotator_and_overall():
    context = make_context()
    scenarios = [scenario_in(context, k) for k in range(4)]
    a, b = AnnotatorFactory(), AnnotatorFactory()
    # a: 3 disagreements answered, 1 revised (score), 1 modality change only; 1 agreement
    j = [judge(a, s, 1, "text", model_score=4.0) for s in scenarios[:3]] + [judge(a, scenarios[3], 4, model_score=4.2)]
    reconfirm(j[0], 3)
    reconfirm(j[1], 1, "image")
    reconfirm(j[2], 1)
    # b: 2 disagreements, 1 answered and revised
    k = [judge(b, s, 5, "both", model_score=1.5) for s in scenarios[:2]]
    reconfirm(k[0], 2)
    result = analysis.revision_rates()
    assert result["overall"] == {
        "checks_offered": 5, "checks_answered": 4, "revised": 2, "modality_changed": 1,
        "rate": 0.5, "modality_rate": 0.25,
    }
    rows = {r["annotator_id"]: r for r in result["per_annotator"]}
    assert rows[a.pk]["rate"] == pytest.approx(1 / 3) and rows[a.pk]["checks_offered"] == 3
    assert rows[b.pk]["rate"] == 1.0 and rows[b.pk]["checks_answered"] == 1 and rows[b.pk]["checks_offered"] == 2
    assert [r["annotator_id"] for r in result["per_annotator"]] == [b.pk, a.pk]  # highest rate first


@pytest.mark.django_db
def test_disagreement_rate_per_day_and_per_model_version(settings):
    settings.MORALE_DISAGREEMENT_THRESHOLD = 1.0
    other = ModelVersion.objects.create(name="head-v2", scorer="efficientnet-minilm-mlp")
    context = make_context()
    scenarios = [scenario_in(context, k) for k in range(6)]
    annotators = [AnnotatorFactory() for _ in range(2)]
    day1 = datetime(2026, 11, 20, 10, tzinfo=dt_timezone.utc)
    day2 = datetime(2026, 11, 21, 23, 30, tzinfo=dt_timezone.utc)
    plan = [  # (day, annotator, scenario, score, model score, version)
        (day1, 0, 0, 1, 2.0, None),  # delta 1.0: disagreement (>=)
        (day1, 0, 1, 3, 3.5, None),
        (day1, 0, 2, 5, None, None),  # no model score: not counted
        (day2, 1, 0, 5, 1.0, other),
        (day2, 1, 1, 4, 4.9, other),
        (day2, 1, 2, 2, 2.0, other),
        (day2, 1, 3, 2, 4.5, None),
    ]
    for day, i, s, score, model, version in plan:
        with mock.patch("django.utils.timezone.now", return_value=day):
            judge(annotators[i], scenarios[s], score, model_score=model, version=version)
    result = analysis.disagreement_rates()
    assert result["by_day"] == [
        {"day": "2026-11-20", "judgments": 3, "scored": 2, "disagreements": 1, "rate": 0.5},
        {"day": "2026-11-21", "judgments": 4, "scored": 4, "disagreements": 2, "rate": 0.5},
    ]
    by_version = {v["name"]: v for v in result["by_version"]}
    assert by_version["head-v2"] == {"model_version_id": other.pk, "name": "head-v2", "scored": 3, "disagreements": 1, "rate": 1 / 3}
    assert by_version[current_version().name]["scored"] == 3 and by_version[current_version().name]["disagreements"] == 2
    assert result["overall"] == {"scored": 6, "disagreements": 3, "rate": 0.5}


@pytest.mark.django_db
def test_collection_progress_against_targets(settings):
    settings.MORALE_JUDGMENTS_PER_SCENARIO = 2
    small = make_context()
    small_scenarios = [scenario_in(small, k) for k in range(2)]
    big = make_context()
    big_scenarios = [scenario_in(big, k) for k in range(3)]
    make_canary(big)
    retired = scenario_in(big, 9)
    type(retired).objects.filter(pk=retired.pk).update(is_retired=True)
    annotators = [AnnotatorFactory() for _ in range(3)]
    for annotator in annotators[:2]:  # through the product's own pages, so the counters move
        assignment = services.assignment_get_or_create(annotator=annotator)
        while assignment is not None:
            services.assignment_submit_ratings(
                annotator=annotator, assignment_id=assignment.pk, page_token=uuid.uuid4(),
                ratings=[services.RatingInput(i.scenario_id, 3, "text") for i in assignment.items.all()],
            )
            services.assignment_complete(annotator=annotator, assignment_id=assignment.pk)
            assignment = services.assignment_get_or_create(annotator=annotator)
    quality.annotator_pause(annotators[2], by=None, reasons="away")
    result = analysis.collection_progress()
    assert result["scenarios"] == {"total": 5, "done": 5, "share": 1.0}
    assert result["contexts"] == {"total": 2, "done": 2, "share": 1.0}
    assert result["judgments"]["target"] == 10 and result["judgments"]["towards_target"] == 10
    assert result["judgments"]["initial"] == 10
    assert result["annotators"] == {"active": 2, "paused": 1, "screened_out": 0}
    extra = scenario_in(small, 5)
    result = analysis.collection_progress()
    assert result["scenarios"]["done"] == 5 and result["scenarios"]["total"] == 6
    assert result["contexts"]["done"] == 1
    assert result["judgments"]["share"] == pytest.approx(10 / 12)
    assert extra.judgment_count == 0 and len(small_scenarios) + len(big_scenarios) == 5


@pytest.mark.django_db
def test_model_metrics_across_versions_from_versions_and_training_runs():
    trained = ModelVersion.objects.create(
        name="head-a", scorer="efficientnet-minilm-mlp", metrics={"test": {"ndcg@5": 0.81, "unsafe_rate_pooled": 0.12}}
    )
    from_run = ModelVersion.objects.create(name="head-b", scorer="efficientnet-minilm-mlp")
    run = TrainingRun.objects.create(
        status="succeeded", model_version=from_run, metrics={"test": {"ndcg@5": 0.85, "kendall_tau_b": 0.4, "mrr": 0.9}}
    )
    result = analysis.model_metrics()
    names = [v["name"] for v in result["versions"]]
    assert names.index("head-a") < names.index("head-b")
    rows = {v["name"]: v for v in result["versions"]}
    assert rows["head-a"]["metrics"]["ndcg@5"] == 0.81 and rows["head-a"]["metrics"]["unsafe_rate_pooled"] == 0.12
    assert rows["head-a"]["metrics"]["mrr"] is None
    assert rows["head-b"]["metrics"]["kendall_tau_b"] == 0.4 and rows["head-b"]["training_run_id"] == run.pk
    assert all(v is None for v in rows[current_version().name]["metrics"].values())
    assert trained.pk


@pytest.mark.django_db
def test_dashboard_bundle_is_json_and_cached(settings, django_assert_num_queries):
    settings.MORALE_DASHBOARD_CACHE_SECONDS = 60
    cache.clear()
    rated(k2011_matrix(), labels=[1, 0, -1] * 4)
    bundle = analysis.dashboard_bundle()
    assert json.loads(json.dumps(bundle)) == bundle
    assert round(bundle["alpha"]["overall"]["interval"], 3) == 0.849
    assert bundle["ratings"]["total"] == sum(1 for row in K2011 for v in row if not math.isnan(v))
    with django_assert_num_queries(0):
        assert analysis.dashboard_bundle() == bundle
    judge(AnnotatorFactory(), Judgment.objects.first().scenario, 5)
    assert analysis.dashboard_bundle(use_cache=False)["ratings"]["total"] == bundle["ratings"]["total"] + 1
    cache.clear()


@pytest.mark.django_db
def test_annotator_quality_summary_counts_stored_flags():
    a, b, c = AnnotatorFactory(), AnnotatorFactory(), AnnotatorFactory()
    Annotator.objects.filter(pk=a.pk).update(
        quality={"flags": [{"code": "too_fast", "message": "x"}, {"code": "constant", "message": "y"}],
                 "stats": {"canary_checks": 10, "canary_pass_rate": 0.7}},
        quality_checked_at=timezone.now(),
    )
    Annotator.objects.filter(pk=b.pk).update(
        quality={"flags": [{"code": "too_fast", "message": "x"}], "stats": {"canary_checks": 2, "canary_pass_rate": 0.5}},
        quality_checked_at=timezone.now(),
    )
    Annotator.objects.filter(pk=c.pk).update(quality={"flags": [], "stats": {"canary_checks": 6, "canary_pass_rate": 1.0}})
    summary = analysis.annotator_quality_summary()
    assert summary["flag_counts"] == {"constant": 1, "too_fast": 2}
    assert summary["flagged"] == 2 and summary["checked"] == 2
    assert summary["canary_rates"] == [0.7, 1.0]  # b answered too few canaries
    hist = {(h["low"], h["high"]): h["n"] for h in summary["canary_histogram"]}
    assert hist[(0.5, 0.8)] == 1 and hist[(0.98, 1.0)] == 1 and sum(hist.values()) == 2
