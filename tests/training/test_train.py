"""The training loop's sanity checks (Karpathy's recipe): loss at init, overfit one list,
recover a known ranking, calibrated output, clear errors for unusable data."""

import math

import numpy as np
import pytest
import torch

from training.lists import ListData, TrainingDataError
from training.synthetic import synthetic_lists
from training.train import CachedFeatures, TrainConfig, fit, train_head


def small(n_lists=300, seed=0, **kw):
    return synthetic_lists(n_lists, dim=32, seed=seed, **kw)


def test_loss_at_initialisation_is_about_log_n_factorial():
    data = small(200, min_len=4, max_len=4)
    result = train_head(TrainConfig(epochs=1, mse_weight=0.0), data, small(20, seed=1))  # ListMLE alone
    assert result.initial_loss == pytest.approx(math.log(24), abs=0.15)


def test_overfits_one_list():
    one = ListData(
        features=torch.randn(5, 16),
        targets=torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0]),
        modality=torch.zeros(5, dtype=torch.long),
        offsets=torch.tensor([0, 5]),
    )
    result = train_head(TrainConfig(epochs=400, lr=1e-2, dropout=0.0, mse_weight=0.0), one, one)  # ListMLE alone
    assert result.history[-1]["train_loss"] < 0.05
    assert result.test_metrics["ndcg@5"] == pytest.approx(1.0)
    assert result.test_metrics["kendall_tau_b"] == pytest.approx(1.0)


def test_listmle_recovers_a_known_ranking_from_noisy_lists():
    train, test = small(1500, seed=0), small(300, seed=1)
    result = train_head(TrainConfig(epochs=5, lr=3e-3, lists_per_step=8), train, test)
    assert result.test_metrics["ndcg@5"] > 0.95
    assert result.history[-1]["train_loss"] < result.initial_loss


def test_calibrated_output_is_on_the_1_to_5_scale_and_close_to_the_truth():
    train, test = small(1500, seed=0), small(300, seed=1)
    result = train_head(TrainConfig(epochs=5, lr=3e-3, lists_per_step=8), train, test)
    with torch.no_grad():
        pred = result.head(test.features)
    assert float(pred.min()) >= 1.0 and float(pred.max()) <= 5.0
    assert float((pred - test.targets).abs().mean()) < 0.5
    assert result.calibration["method"] == "builtin" and result.calibration["b"] > 0


@pytest.mark.parametrize("loss", ["bpo", "bce"])
def test_baselines_train_too(loss):
    result = train_head(TrainConfig(loss=loss, epochs=3, lr=3e-3, lists_per_step=8), small(600), small(100, seed=1))
    assert result.test_metrics["ndcg@5"] > 0.8


def test_same_seed_same_head():
    a = train_head(TrainConfig(epochs=1, lr=1e-3), small(100), small(20, seed=1))
    b = train_head(TrainConfig(epochs=1, lr=1e-3), small(100), small(20, seed=1))
    for (name, x), (_, y) in zip(a.head.state_dict().items(), b.head.state_dict().items()):
        assert torch.equal(x, y), name


def test_nan_features_are_a_clear_error():
    data = small(50)
    data.features[3, 0] = float("nan")
    with pytest.raises(TrainingDataError, match="NaN"):
        train_head(TrainConfig(epochs=1), data, small(10, seed=1))


def test_empty_data_is_a_clear_error():
    empty = ListData(torch.zeros(0, 8), torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.tensor([0]))
    with pytest.raises(TrainingDataError, match="no lists"):
        train_head(TrainConfig(epochs=1), empty, small(10))


def test_lists_of_one_cannot_train_a_ranking_loss():
    singles = synthetic_lists(20, dim=8, min_len=1, max_len=1)
    with pytest.raises(TrainingDataError, match="single scenario"):
        train_head(TrainConfig(epochs=1), singles, singles)


def test_all_equal_scores_are_a_clear_error():
    data = small(50)
    data.targets[:] = 3.0
    with pytest.raises(TrainingDataError, match="all equal"):
        train_head(TrainConfig(epochs=1), data, small(10, seed=1))


def test_some_equal_scores_train_without_nan():
    data = small(50)
    data.targets[: len(data.targets) // 2] = 3.0
    result = train_head(TrainConfig(epochs=1), data, small(10, seed=1))
    assert np.isfinite(result.history[-1]["train_loss"])


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="hinge")


class NaNAtStep:
    """A ListEncoder over cached features whose features turn NaN from training step `bad` on."""

    def __init__(self, data, bad):
        self.inner, self.bad, self.steps = CachedFeatures(data, data), bad, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, rows):
        feats, targets, modality, mask = self.inner.encode(rows)
        if torch.is_grad_enabled():  # a training step, not the loss at initialisation
            self.steps += 1
            if self.steps >= self.bad:
                feats = torch.full_like(feats, float("nan"))
        return feats, targets, modality, mask


def test_the_loop_stops_at_the_first_non_finite_step_loss():
    encoder = NaNAtStep(small(20), bad=3)
    with pytest.raises(TrainingDataError, match=r"diverged at epoch 1, step 3 \(loss nan\)"):
        fit(TrainConfig(epochs=2), encoder)
    assert encoder.steps == 3


def test_one_list_per_step_encodes_exactly_as_the_padded_batch():
    data = small(30)
    encoder = CachedFeatures(data, data)
    encoder.load()
    for row in (0, 7, 29):
        fast = encoder.encode(torch.tensor([row]))
        feats, targets, modality, mask = data.batch(torch.tensor([row]))
        n = int(mask.sum())
        assert torch.equal(fast[0], feats[:, :n]) and torch.equal(fast[1], targets[:, :n])
        assert torch.equal(fast[2], modality[:, :n]) and bool(fast[3].all()) and fast[3].shape == (1, n)
