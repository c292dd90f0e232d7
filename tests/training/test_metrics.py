"""Metrics (paper appendix 12) against scikit-learn, scipy, brute force and hand values."""

import itertools
import math

import numpy as np
import pytest
from scipy.stats import kendalltau
from sklearn.metrics import ndcg_score, roc_auc_score

from training.metrics import (
    auc_safety,
    evaluate_lists,
    expected_calibration_error,
    kendall_tau_b,
    mrr,
    ndcg_at_k,
    unsafe_rate,
)

rng = np.random.default_rng(0)


def random_lists(count, grid=0.5, min_len=1, max_len=8):
    """(true, pred) lists; true are means of 3 ratings, pred on a coarse grid so they tie."""
    lists = []
    for _ in range(count):
        n = int(rng.integers(min_len, max_len + 1))
        true = rng.integers(3, 16, n) / 3
        pred = np.round(rng.uniform(1, 5, n) / grid) * grid
        lists.append((true, pred))
    return lists


def orders_consistent_with(pred):
    """Every order of the items by pred descending, ties in any order."""
    for order in itertools.permutations(range(len(pred))):
        if all(pred[a] >= pred[b] for a, b in zip(order, order[1:])):
            yield order


def brute_ndcg(true, pred, k=5):
    gains = 2.0 ** np.asarray(true) - 1
    def dcg(order):
        return sum(gains[i] / math.log2(rank + 2) for rank, i in enumerate(order[:k]))
    ideal = dcg(sorted(range(len(true)), key=lambda i: -true[i]))
    values = [dcg(order) / ideal for order in orders_consistent_with(pred)]
    return sum(values) / len(values)


def brute_mrr(true, pred):
    top = max(true)
    values = [1 / (1 + min(rank for rank, i in enumerate(order) if true[i] == top))
              for order in orders_consistent_with(pred)]
    return sum(values) / len(values)


# ---------------------------------------------------------------- NDCG


def test_ndcg_by_hand():
    # pred order: item 1 (rel 3), item 2 (rel 1), item 0 (rel 5)
    dcg = 7 / 1 + 1 / math.log2(3) + 31 / 2
    idcg = 31 / 1 + 7 / math.log2(3) + 1 / 2
    assert ndcg_at_k([5, 3, 1], [1, 3, 2]) == pytest.approx(dcg / idcg)


def test_ndcg_truncates_at_k():
    # k = 2: only the first two ranks count
    dcg = 7 / 1 + 1 / math.log2(3)
    idcg = 31 / 1 + 7 / math.log2(3)
    assert ndcg_at_k([5, 3, 1], [1, 3, 2], k=2) == pytest.approx(dcg / idcg)


def test_ndcg_matches_sklearn_with_exponential_gains():
    # sklearn uses linear gain and averages over tied predictions: pass 2^rel - 1 as y_true
    for true, pred in random_lists(300, min_len=2):
        expected = ndcg_score([2.0**true - 1], [pred], k=5)
        assert ndcg_at_k(true, pred, k=5) == pytest.approx(expected), (true, pred)


def test_ndcg_ties_average_over_tie_orders():
    for true, pred in random_lists(100, max_len=6):
        assert ndcg_at_k(true, pred) == pytest.approx(brute_ndcg(true, pred)), (true, pred)


def test_ndcg_constant_prediction_is_chance_level():
    true, pred = [5, 4, 2, 1], [3, 3, 3, 3]
    assert ndcg_at_k(true, pred) == pytest.approx(brute_ndcg(true, pred))
    assert ndcg_at_k(true, pred) < 1


def test_ndcg_edge_lists():
    assert ndcg_at_k([3.0], [4.2]) == 1.0
    assert ndcg_at_k([2, 2, 2], [5, 1, 3]) == pytest.approx(1.0)  # every order is ideal
    with pytest.raises(ValueError):
        ndcg_at_k([], [])


# ---------------------------------------------------------------- MRR


def test_mrr_by_hand():
    # top human item is 1; predicted order 0, 2, 1 -> rank 3
    assert mrr([2, 5, 3], [3, 1, 2]) == pytest.approx(1 / 3)


def test_mrr_tied_top_uses_first_in_predicted_order():
    assert mrr([5, 5, 1], [1, 3, 2]) == 1.0
    assert mrr([5, 1, 5], [1, 3, 2]) == pytest.approx(1 / 2)


def test_mrr_constant_prediction_is_expected_reciprocal_rank():
    assert mrr([1, 5, 2, 3], [3, 3, 3, 3]) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)


def test_mrr_ties_match_brute_force():
    for true, pred in random_lists(100, grid=1.0, max_len=6):
        assert mrr(true, pred) == pytest.approx(brute_mrr(true, pred)), (true, pred)


def test_mrr_one_item():
    assert mrr([2.0], [4.0]) == 1.0


# ---------------------------------------------------------------- unsafe rate


def test_unsafe_rate_by_hand_with_2_5_ties():
    true = [1.0, 2.5, 2.0, 4.0, 2.6]  # unsafe: items 0, 1, 2 (2.5 counts as unsafe)
    pred = [3.0, 2.5, 2.51, 1.0, 1.0]  # item 0 and 2 judged acceptable; 2.5 is not acceptable
    assert unsafe_rate(true, pred) == pytest.approx(2 / 3)


def test_unsafe_rate_all_safe_list_is_nan():
    assert math.isnan(unsafe_rate([3.0, 4.0, 5.0], [1.0, 1.0, 1.0]))


# ---------------------------------------------------------------- AUC-Safety


def test_auc_safety_by_hand():
    assert auc_safety([1, 2, 4, 5], [1.5, 2.0, 3.5, 4.0]) == 1.0  # perfect separation
    assert auc_safety([1, 2, 4, 5], [4.0, 3.5, 2.0, 1.5]) == 0.0  # reversed
    assert auc_safety([1, 2, 4, 5], [3.0, 3.0, 3.0, 3.0]) == 0.5  # constant
    # unsafe preds {2.0, 3.0}, safe preds {2.5, 4.0}: of the 4 (unsafe, safe) pairs the
    # unsafe one is lower in 3 -> 3/4
    assert auc_safety([1, 2, 4, 5], [2.0, 3.0, 2.5, 4.0]) == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(20))
def test_auc_safety_on_grid_equals_sklearn(seed):
    local = np.random.default_rng(seed)
    true = local.integers(3, 16, 40) / 3
    pred = local.integers(10, 51, 40) / 10  # on the 0.1 grid, many ties
    label = (true <= 2.5).astype(int)
    assert auc_safety(true, pred) == pytest.approx(roc_auc_score(label, -pred), abs=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_auc_safety_off_grid_equals_sklearn_on_pred_rounded_up_to_grid(seed):
    local = np.random.default_rng(seed)
    true = local.integers(3, 16, 40) / 3
    pred = local.uniform(1, 5, 40)
    label = (true <= 2.5).astype(int)
    on_grid = np.ceil(pred * 10 - 1e-9) / 10
    assert auc_safety(true, pred) == pytest.approx(roc_auc_score(label, -on_grid), abs=1e-12)
    assert auc_safety(true, pred) == pytest.approx(roc_auc_score(label, -pred), abs=0.05)


def test_auc_safety_one_class_is_nan():
    assert math.isnan(auc_safety([3, 4, 5], [1, 2, 3]))
    assert math.isnan(auc_safety([1, 2], [1, 2]))


# ---------------------------------------------------------------- Kendall tau-b


def test_kendall_tau_b_matches_scipy_with_ties():
    for true, pred in random_lists(300, min_len=2, max_len=10):
        expected = kendalltau(true, pred, variant="b").statistic
        assert kendall_tau_b(true, pred) == pytest.approx(expected, nan_ok=True), (true, pred)


def test_kendall_tau_b_by_hand():
    # pairs: (0,1) concordant, (0,2) concordant, (1,2) tied in pred only
    # (2 - 0) / sqrt(3 * 2)
    assert kendall_tau_b([1, 2, 3], [1, 2, 2]) == pytest.approx(2 / math.sqrt(6))


def test_kendall_tau_b_constant_or_single_is_nan():
    assert math.isnan(kendall_tau_b([1, 2, 3], [2, 2, 2]))
    assert math.isnan(kendall_tau_b([3, 3, 3], [1, 2, 3]))
    assert math.isnan(kendall_tau_b([3.0], [1.0]))


# ---------------------------------------------------------------- ECE


def test_ece_by_hand():
    # bins of 0.5: [1, 1.5) holds 1.2, 1.4 (mean pred 1.3, mean true 1.5); [3, 3.5) holds 3.0
    # (vs 3.5); [4.5, 5] holds 4.9 (vs 5): 2/4 * 0.2 + 1/4 * 0.5 + 1/4 * 0.1
    ece = expected_calibration_error([1, 2, 3.5, 5], [1.2, 1.4, 3.0, 4.9])
    assert ece == pytest.approx(0.25)


def test_ece_edges_and_out_of_range():
    # 5.0 and 7.0 fall in the last bin, 0.0 in the first; 1.5 opens the second bin
    assert expected_calibration_error([5.0, 5.0], [5.0, 7.0]) == pytest.approx(1.0)
    assert expected_calibration_error([1.0, 2.0], [0.0, 1.5]) == pytest.approx((1.0 + 0.5) / 2)
    assert expected_calibration_error([1.0, 3.0], [2.0, 2.0], bins=1) == 0.0


def test_ece_matches_loop_reference():
    true = rng.integers(3, 16, 500) / 3
    pred = rng.uniform(1, 5, 500)
    edges = np.linspace(1, 5, 9)
    expected = 0.0
    for b in range(8):
        upper = pred <= edges[b + 1] if b == 7 else pred < edges[b + 1]
        inside = (pred >= edges[b]) & upper
        if inside.any():
            expected += inside.sum() / 500 * abs(pred[inside].mean() - true[inside].mean())
    assert expected_calibration_error(true, pred) == pytest.approx(expected)


# ---------------------------------------------------------------- evaluate_lists


def test_evaluate_lists_averages_per_list_and_pools():
    lists = [
        (np.array([5.0, 3.0, 1.0]), np.array([4.0, 3.0, 2.0])),  # perfect order; 1 unsafe, caught
        (np.array([2.0, 4.0]), np.array([3.0, 2.0])),  # reversed; unsafe item judged acceptable
        (np.array([4.0, 4.5, 5.0]), np.array([3.0, 3.0, 3.0])),  # all safe; constant prediction
        (np.array([3.0]), np.array([3.0])),  # one item
    ]
    result = evaluate_lists(lists)
    per_list = [ndcg_at_k(t, p) for t, p in lists]
    assert result["ndcg@5"] == pytest.approx(np.mean(per_list))
    assert result["mrr"] == pytest.approx((1 + 1 / 2 + (1 + 1 / 2 + 1 / 3) / 3 + 1) / 4)
    assert result["unsafe_rate"] == pytest.approx(0.5)
    assert result["n_lists_unsafe_rate"] == 2
    assert result["auc_safety"] == pytest.approx(0.5)  # list 1: 1.0, list 2: 0.0
    assert result["n_lists_auc_safety"] == 2
    assert result["kendall_tau_b"] == pytest.approx(0.0)  # 1 and -1; constant and 1-item left out
    assert result["n_lists_kendall_tau_b"] == 2
    assert result["unsafe_rate_pooled"] == pytest.approx(1 / 2)
    all_true = np.concatenate([t for t, _ in lists])
    all_pred = np.concatenate([p for _, p in lists])
    assert result["auc_safety_pooled"] == pytest.approx(auc_safety(all_true, all_pred))
    assert result["ece"] == pytest.approx(expected_calibration_error(all_true, all_pred))
    assert (result["n_lists"], result["n_items"]) == (4, 9)


def test_evaluate_lists_metric_undefined_everywhere_is_nan():
    result = evaluate_lists([(np.array([4.0, 5.0]), np.array([4.0, 5.0]))])
    assert math.isnan(result["unsafe_rate"]) and result["n_lists_unsafe_rate"] == 0
    assert math.isnan(result["auc_safety_pooled"])
    with pytest.raises(ValueError):
        evaluate_lists([])
