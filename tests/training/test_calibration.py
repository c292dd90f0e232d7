"""The calibration onto the 1-5 scale: the fit recovers known parameters, folding it makes
the head output exactly the fitted mapping, and it never changes an order within a list:
identical ranking metrics before and after, or a clear failure (issue 11)."""

import math

import pytest
import torch

from modelloop.scoring.offline import ScoreHead
from training import calibration
from training.calibration import CalibrationError, calibrate, fit_logistic_calibration, order_changes
from training.lists import ListData, offsets_of
from training.synthetic import offset_lists
from training.train import TrainConfig, evaluate, train_head

RANKING = ("ndcg@5", "mrr", "kendall_tau_b", "n_lists_kendall_tau_b")


def test_calibration_fit_recovers_known_parameters():
    logits = torch.linspace(-3, 3, 200)
    targets = 1 + 4 * torch.sigmoid(0.5 + 0.8 * logits)
    a, b = fit_logistic_calibration(logits, targets)
    assert a == pytest.approx(0.5, abs=1e-2) and b == pytest.approx(0.8, abs=1e-2)


def test_a_saturating_fit_is_capped_at_the_slope_ceiling():
    logits = torch.linspace(-3, 3, 200)
    targets = torch.where(logits > 0, 5.0, 1.0)  # binary: the unconstrained slope runs to infinity
    a, b = fit_logistic_calibration(logits, targets)
    assert b * float(logits.double().std()) == pytest.approx(calibration.SLOPE_CEILING, rel=1e-6)


def test_a_flat_fit_is_an_error_not_a_tied_head():
    # Logits dominated by per-list offsets that say nothing about the scores: the slope that
    # minimises the MSE collapses (issue 11: 1e-7), which would tie every list.
    generator = torch.Generator().manual_seed(0)
    within = torch.randn(300, generator=generator)
    offsets = 1e4 * torch.randn(100, generator=generator).repeat_interleave(3)
    targets = 3 + 0.01 * within
    with pytest.raises(CalibrationError, match="flat"):
        fit_logistic_calibration(within + offsets, targets)


def test_constant_logits_are_an_error():
    with pytest.raises(CalibrationError, match="constant"):
        fit_logistic_calibration(torch.ones(10), torch.linspace(1, 5, 10))


def test_the_folded_head_outputs_the_fitted_mapping_of_its_old_logits():
    torch.manual_seed(0)
    head = ScoreHead(in_dim=8, hidden=16, dropout=0.0).eval()
    features = torch.randn(50, 8)
    with torch.no_grad():
        before = head.logits(features)
    targets = 1 + 4 * torch.sigmoid(0.3 + 0.5 * (before - before.mean()) / before.std())
    data = ListData(features, targets, torch.zeros(50, dtype=torch.long), offsets_of([5] * 10))
    record = calibrate(head, data)
    with torch.no_grad():
        after = head(features)
    expected = 1 + 4 * torch.sigmoid(record["a"] + record["b"] * before)
    assert torch.allclose(after, expected, atol=1e-5)
    assert record["method"] == "builtin" and record["b"] > 0 and record["pairs_checked"] == 100
    assert after.argsort().tolist() == before.argsort().tolist()


def test_order_changes_counts_pairs_within_lists_only():
    data = ListData(torch.zeros(5, 1), torch.arange(5.0), torch.zeros(5, dtype=torch.long), offsets_of([3, 2]))
    before = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert order_changes(before, before * 2, data) == 0
    assert order_changes(before, torch.tensor([1.0, 1.0, 3.0, 9.0, 0.0]), data) == 2  # a tie, a swap
    assert order_changes(before, torch.tensor([9.0, 9.5, 9.9, 0.0, 0.1]), data) == 0  # levels move freely


def test_a_fold_that_would_tie_float32_scores_fails_when_the_head_has_no_scale(monkeypatch):
    head = ScoreHead(in_dim=1, hidden=1, dropout=0.0).eval()
    with torch.no_grad():
        head.net[0].weight.fill_(1.0), head.net[0].bias.fill_(0.0)
        head.net[-1].weight.fill_(1.0), head.net[-1].bias.fill_(0.0)
    # Logits 1 apart across lists, 1e-6 apart within them: distinct in float32 before, a
    # fitted slope of 1e-3 merges them.
    features = torch.tensor([[0.0], [0.000001], [1.0], [1.000001]])
    data = ListData(features, torch.tensor([1.0, 1.1, 3.0, 3.1]), torch.zeros(4, dtype=torch.long), offsets_of([2, 2]))
    with torch.no_grad():
        raw = head(features)
    assert raw[0] < raw[1] and raw[2] < raw[3]
    monkeypatch.setattr(calibration, "fit_logistic_calibration", lambda logits, targets: (0.0, 1e-3))
    with pytest.raises(CalibrationError, match="changes the order of 2 of 2 scenario pairs"):
        calibrate(head, data, required=True)
    record = calibrate(head, data, required=False)  # trained on the 1-5 scale: kept as trained
    assert record["b"] == 1.0 and "changes the order" in record["rejected"]
    with torch.no_grad():
        assert head.net[-1].weight.item() == 1.0


def _raw_and_deployed(result, test):
    return evaluate(result.raw_head, test), evaluate(result.head, test)


@pytest.mark.parametrize("binary", [False, True], ids=["graded", "binary"])
@pytest.mark.parametrize("mse_weight", [0.0, 0.5], ids=["loss-alone", "with-mse"])
def test_on_lists_that_differ_by_an_offset_the_deployed_head_ranks_as_the_raw_head(binary, mse_weight):
    train = offset_lists(300, offset_scale=3.0, binary=binary, seed=0)
    test = offset_lists(60, offset_scale=3.0, binary=binary, seed=1)
    result = train_head(TrainConfig(epochs=3, lr=3e-3, mse_weight=mse_weight), train, test)
    raw, deployed = _raw_and_deployed(result, test)
    for key in RANKING:
        assert deployed[key] == raw[key] or (math.isnan(deployed[key]) and math.isnan(raw[key])), key
    with torch.no_grad():
        raw_scores, scores = result.raw_head(test.features), result.head(test.features)
    assert order_changes(raw_scores, scores, test) == 0
    assert deployed["ndcg@5"] > 0.9 and float(scores.min()) >= 1 and float(scores.max()) <= 5


def test_on_offset_lists_the_auxiliary_mse_anchors_the_score():
    train, test = offset_lists(300, offset_scale=3.0, seed=0), offset_lists(60, offset_scale=3.0, seed=1)
    alone = train_head(TrainConfig(epochs=3, lr=3e-3, mse_weight=0.0), train, test)
    anchored = train_head(TrainConfig(epochs=3, lr=3e-3), train, test)
    assert anchored.test_metrics["mae"] < alone.test_metrics["mae"]


def test_a_small_training_set_calibrates_without_ties():
    train, test = offset_lists(4, seed=0), offset_lists(3, seed=1)
    result = train_head(TrainConfig(epochs=5, lr=3e-3), train, test)
    raw, deployed = _raw_and_deployed(result, test)
    assert all(deployed[key] == raw[key] for key in ("ndcg@5", "mrr"))
