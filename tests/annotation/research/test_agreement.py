"""Agreement figures (annotation.research.agreement), each against an independent computation.

Krippendorff's alpha is checked against the worked example of Krippendorff (2011,
"Computing Krippendorff's Alpha-Reliability", section E: nominal 0.743, ordinal 0.815,
interval 0.849) and against a brute-force pairable-values implementation written here
from that paper; the other figures against counts made by hand.
"""

import itertools
import json
import math
import random
from collections import Counter, defaultdict

import numpy as np
import pytest

from annotation import services
from annotation.models import ImportBatch
from annotation.research import agreement
from tests.annotation.research.builders import K2011, judge, k2011_matrix, rated, reconfirm, scenario_in, units_of
from tests.factories import AnnotatorFactory, make_canary, make_context


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
    got = agreement.alpha_from_counts(counts_from(units, [1, 2, 3, 4, 5]), level=level, value_domain=[1, 2, 3, 4, 5])
    assert round(got, 3) == expected
    assert got == pytest.approx(brute_alpha(units, level, [1, 2, 3, 4, 5]), abs=1e-12)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_alpha_matches_brute_force_on_random_data(level):
    rng = random.Random(7)
    units = []
    for _ in range(60):
        base = rng.randint(1, 5)
        units.append([min(5, max(1, base + rng.choice([-2, -1, 0, 0, 0, 1]))) for _ in range(rng.randint(1, 4))])
    got = agreement.alpha_from_counts(counts_from(units, [1, 2, 3, 4, 5]), level=level, value_domain=[1, 2, 3, 4, 5])
    assert got == pytest.approx(brute_alpha(units, level, [1, 2, 3, 4, 5]), abs=1e-10)


def test_alpha_is_none_when_undefined():
    assert agreement.alpha_from_counts(np.zeros((0, 5)), level="interval", value_domain=[1, 2, 3, 4, 5]) is None
    one_rater = counts_from([[3], [4]], [1, 2, 3, 4, 5])
    assert agreement.alpha_from_counts(one_rater, level="interval", value_domain=[1, 2, 3, 4, 5]) is None
    all_same = counts_from([[3, 3], [3, 3, 3]], [1, 2, 3, 4, 5])
    assert agreement.alpha_from_counts(all_same, level="ordinal", value_domain=[1, 2, 3, 4, 5]) is None


# --- alpha from the database ---------------------------------------------------------------------
@pytest.mark.django_db
def test_krippendorff_alphas_overall_match_the_worked_example_and_brute_force():
    matrix = k2011_matrix()
    rated(matrix)
    result = agreement.krippendorff_alphas()
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
    result = agreement.krippendorff_alphas()
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
    services.annotator_screen_out(c, by=None, reasons=["test"])

    table = agreement.judgment_table()
    assert table.scenario_ids.tolist() == [scenario.pk]
    assert sorted(zip(table.annotator.tolist(), table.score.tolist())) == [(a.pk, 4), (b.pk, 5)]
    initial = agreement.judgment_table(source="initial")
    assert sorted(initial.score.tolist()) == [2, 5]
    with_screened = agreement.judgment_table(include_screened=True)
    assert sorted(with_screened.score.tolist()) == [1, 4, 5]


@pytest.mark.django_db
def test_table_follows_the_export_source_setting(settings):
    context = make_context()
    scenario = scenario_in(context, 0)
    first = judge(AnnotatorFactory(), scenario, 2, model_score=4.5)
    reconfirm(first, 4)
    settings.MORALE_EXPORT_SOURCE = "initial"
    assert agreement.judgment_table().score.tolist() == [2]
    settings.MORALE_EXPORT_SOURCE = "reconfirmed"
    assert agreement.judgment_table().score.tolist() == [4]


# --- modality and ratings ----------------------------------------------------------------------------
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
    result = agreement.modality_agreement()
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
    result = agreement.rating_distribution()
    expected = Counter(cell for row in matrix for cell in row)
    for modality in ("text", "image", "both"):
        assert result["counts"][modality] == [expected[(s, modality)] for s in range(1, 6)]
    assert result["total"] == 27
    assert result["modality_share"]["image"] == pytest.approx(sum(v for (s, m), v in expected.items() if m == "image") / 27)
