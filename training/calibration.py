"""The calibration of a trained head onto the annotators' 1-5 scale, fitted and folded in one place.

ListMLE fixes the order of the scores but not their scale: ``calibrate`` fits
``1 + 4 * sigmoid(a + b * logit)`` on the training lists and folds it into the head's last
layer (strictly increasing: no ranking changes). Used by ``training.train``'s loop only.
"""

from __future__ import annotations

import torch

from modelloop.scoring.offline import ScoreHead

FITTED = "1 + 4 * sigmoid(a + b * logit) on the training lists, folded into the head"


def fit_logistic_calibration(logits: torch.Tensor, targets: torch.Tensor, steps: int = 200) -> tuple[float, float]:
    """(a, b) minimising the MSE of 1 + 4 * sigmoid(a + b * logit) against the targets, b > 0."""
    z = (logits - logits.mean()) / logits.std().clamp(min=1e-6)  # standardise for a well-posed fit
    a = torch.zeros((), requires_grad=True)
    log_b = torch.zeros((), requires_grad=True)
    optimiser = torch.optim.LBFGS([a, log_b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = ((1 + 4 * torch.sigmoid(a + log_b.exp() * z) - targets) ** 2).mean()
        loss.backward()
        return loss

    optimiser.step(closure)
    a, b_z = float(a.detach()), float(log_b.detach().exp())
    # Undo the standardisation: a + b_z * (logit - mean) / std
    std = float(logits.std().clamp(min=1e-6))
    return a - b_z * float(logits.mean()) / std, b_z / std


def fold_calibration(head: ScoreHead, a: float, b: float) -> None:
    """Make head(x) = 1 + 4 * sigmoid(a + b * old_logit(x)) by rescaling its last layer."""
    last = head.net[-1]
    with torch.no_grad():
        last.weight.mul_(b)
        last.bias.mul_(b).add_(a)


def calibrate(head: ScoreHead, features: torch.Tensor, targets: torch.Tensor) -> dict:
    """Fit the calibration on (features [N, D], targets [N]) and fold it into ``head`` (in eval
    mode); returns the version's calibration record."""
    with torch.no_grad():
        logits = head.logits(features)
    a, b = fit_logistic_calibration(logits, targets)
    fold_calibration(head, a, b)
    # "builtin" for the scoring service: the head's own output is already calibrated.
    return {"method": "builtin", "fitted": FITTED, "a": a, "b": b}
