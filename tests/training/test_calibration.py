"""The calibration onto the 1-5 scale: the fit recovers known parameters, and folding it
into the head makes the head output exactly the fitted mapping."""

import pytest
import torch

from modelloop.scoring.offline import ScoreHead
from training.calibration import calibrate, fit_logistic_calibration


def test_calibration_fit_recovers_known_parameters():
    logits = torch.linspace(-3, 3, 200)
    targets = 1 + 4 * torch.sigmoid(0.5 + 2.0 * logits)
    a, b = fit_logistic_calibration(logits, targets)
    assert a == pytest.approx(0.5, abs=1e-2) and b == pytest.approx(2.0, abs=1e-2)


def test_the_folded_head_outputs_the_fitted_mapping_of_its_old_logits():
    torch.manual_seed(0)
    head = ScoreHead(in_dim=8, hidden=16, dropout=0.0).eval()
    features = torch.randn(50, 8)
    with torch.no_grad():
        before = head.logits(features)
    targets = 1 + 4 * torch.sigmoid(0.3 + 1.5 * before)
    record = calibrate(head, features, targets)
    with torch.no_grad():
        after = head(features)
    expected = 1 + 4 * torch.sigmoid(record["a"] + record["b"] * before)
    assert torch.allclose(after, expected, atol=1e-5)
    assert record["method"] == "builtin" and record["b"] > 0
    assert after.argsort().tolist() == before.argsort().tolist()  # strictly increasing: no ranking changes
