"""Evaluation at any size: folds by context, spread over folds and seeds, the random row,
per-scenario predictions, and clear errors and warnings for small data sets (issue 11)."""

import csv
import math

import numpy as np
import pytest
import torch

from training import metrics
from training.evaluation import (
    MIN_TEST_LISTS,
    PREDICTION_COLUMNS,
    cross_validation_splits,
    evaluate_methods,
    fold_of_lists,
    random_scores,
    small_test_warning,
    table,
    write_predictions,
)
from training.lists import ListData, TrainingDataError
from training.synthetic import synthetic_lists
from training.train import TrainConfig


def with_contexts(data: ListData, contexts: list[int]) -> ListData:
    data.context_ids = contexts
    return data


def test_folds_never_split_a_context():
    data = with_contexts(synthetic_lists(30, dim=4), [n // 3 for n in range(30)])  # 10 contexts of 3 lists
    which = fold_of_lists(data, 4, seed=7)
    by_context = {}
    for context, fold in zip(data.context_ids, which):
        by_context.setdefault(context, set()).add(fold)
    assert all(len(folds) == 1 for folds in by_context.values())
    assert sorted(set(which)) == [0, 1, 2, 3]
    splits = cross_validation_splits(data, 4, seed=7)
    for split in splits:
        assert not set(split.train.context_ids) & set(split.test.context_ids)
        assert split.train.n_lists + split.test.n_lists == 30
    assert sorted(c for s in splits for c in s.test.scenario_ids) == list(range(len(data.targets)))


def test_folds_depend_on_the_seed_only():
    data = with_contexts(synthetic_lists(40, dim=4), list(range(40)))
    assert fold_of_lists(data, 5, seed=1) == fold_of_lists(data, 5, seed=1)
    assert fold_of_lists(data, 5, seed=1) != fold_of_lists(data, 5, seed=2)


def test_too_few_lists_for_the_folds_is_an_error_naming_them():
    data = with_contexts(synthetic_lists(6, dim=4), [1, 1, 2, 2, 3, 3])
    with pytest.raises(TrainingDataError, match=r"6 list\(s\) \(3 context\(s\)\): too few for 4 folds"):
        fold_of_lists(data, 4)
    with pytest.raises(TrainingDataError, match="2 or more folds"):
        fold_of_lists(data, 1)


def test_a_small_test_split_is_warned_about():
    assert small_test_warning(MIN_TEST_LISTS) is None
    assert "has 3 list(s), fewer than 20" in small_test_warning(3)


def test_random_scores_are_seeded_and_on_the_scale():
    a, b = random_scores(100, 0, "1"), random_scores(100, 0, "1")
    assert np.array_equal(a, b) and not np.array_equal(a, random_scores(100, 1, "1"))
    assert a.min() >= 1 and a.max() <= 5


def test_cross_validation_reports_every_method_with_its_spread_and_writes_predictions(tmp_path):
    data = with_contexts(synthetic_lists(45, dim=16, seed=0), list(range(45)))
    splits = cross_validation_splits(data, 3)
    stored = {sid: 3.0 for sid in data.scenario_ids}
    evaluation = evaluate_methods(
        splits,
        configs={"ListMLE head": lambda seed: TrainConfig(epochs=2, lr=3e-3, seed=seed)},
        seeds=[0, 1],
        current=("v1", stored),
    )
    names = [m.name for m in evaluation.methods]
    assert names == ["ListMLE head", "random scores", "current: v1"]
    assert len(evaluation.warnings) == 3 and "fewer than 20" in evaluation.warnings[0]  # 15 lists per fold
    listmle = evaluation.methods[0]
    assert len(listmle.runs) == 6
    mean, fold_sd, seed_sd = listmle.summary("ndcg@5")
    assert 0 < mean <= 1 and fold_sd >= 0 and seed_sd >= 0
    assert mean > evaluation.methods[1].summary("ndcg@5")[0]  # better than chance
    lines = table(evaluation)
    assert "MAE" in lines[0] and "Grounding" in lines[0] and any("random scores" in line for line in lines)
    path = write_predictions(tmp_path / "p.csv", evaluation.predictions)
    rows = list(csv.DictReader(path.open()))
    assert tuple(rows[0]) == PREDICTION_COLUMNS
    n_items = len(data.targets)
    assert len(rows) == 2 * n_items + 2 * n_items + n_items  # ListMLE and random per seed, current once
    # Anyone can recompute a metric from the file: NDCG@5 of ListMLE, seed 0, fold 0.
    mine = [r for r in rows if r["method"] == "ListMLE head" and r["seed"] == "0" and r["fold"] == "0"]
    lists = {}
    for r in mine:
        lists.setdefault(r["context_id"], []).append((float(r["human_mean"]), float(r["deployed_score"])))
    recomputed = np.mean([metrics.ndcg_at_k([t for t, _ in v], [p for _, p in v]) for v in lists.values()])
    assert recomputed == pytest.approx(listmle.runs[(0, "0")]["ndcg@5"], abs=1e-6)
    for r in mine:
        assert r["loss"] == "listmle+0.5*mse"


def test_grounding_share_counts_judgments_at_or_beyond_the_threshold():
    share, n = metrics.grounding_share([3.0, 4.0], [[1, 2, 3], [5]], threshold=1.0)
    assert n == 4 and share == pytest.approx(3 / 4)  # |1-3|, |2-3|, |5-4| count; |3-3| does not
    assert math.isnan(metrics.grounding_share([3.0], [[]], 1.0)[0])
    with pytest.raises(ValueError):
        metrics.grounding_share([3.0, 4.0], [[1]], 1.0)


def test_evaluate_lists_reports_mae_and_the_grounding_share_over_judgments():
    lists = [(np.array([1.0, 5.0]), np.array([2.0, 5.0])), (np.array([3.0, 3.0]), np.array([3.0, 1.0]))]
    result = metrics.evaluate_lists(lists, judgments=[[[1, 1], [5]], [[3], [2, 4]]], grounding_threshold=1.0)
    assert result["mae"] == pytest.approx((1 + 0 + 0 + 2) / 4)
    # deltas: 1,1 | 0 | 0 | 1,3 -> 4 of 6
    assert result["grounding_share"] == pytest.approx(4 / 6) and result["n_grounding_judgments"] == 6
    on_means = metrics.evaluate_lists(lists)
    assert on_means["grounding_share"] == pytest.approx(2 / 4) and on_means["n_grounding_judgments"] == 4


def test_concat_and_subset_keep_contexts_and_judgments():
    a = ListData(torch.zeros(3, 1), torch.ones(3), torch.zeros(3, dtype=torch.long), torch.tensor([0, 1, 3]),
                 [1, 2, 3], [10, 11], [[1.0], [2.0], [3.0]])
    b = ListData(torch.zeros(2, 1), torch.ones(2), torch.zeros(2, dtype=torch.long), torch.tensor([0, 2]),
                 [4, 5], [12], [[4.0], []])
    both = ListData.concat([a, b])
    assert both.offsets.tolist() == [0, 1, 3, 5] and both.context_ids == [10, 11, 12]
    part = both.subset([2, 0])
    assert part.scenario_ids == [4, 5, 1] and part.context_ids == [12, 10] and part.judgments == [[4.0], [], [1.0]]
    assert part.list_judgments() == [[[4.0], []], [[1.0]]]
