"""The calibration of a trained head onto the annotators' 1-5 scale, fitted, folded and checked
in one place.

A listwise loss fixes the order of the scores within a list but not their level: ListMLE is
blind to a constant added to one list's logits. Where lists differ mainly by such an offset
(the image features are the same for every scenario of a context), a calibration fitted
across lists on those logits sees mostly between-list noise and its slope collapses (to
1e-7 in issue 11), which in float32 leaves whole lists tied. The root cause is fixed in the
training: the default loss adds the paper's auxiliary MSE on the 1-5 scale, so the head's
own output ``1 + 4 * sigmoid(logit)`` is anchored. What is left here is a small correction,
``1 + 4 * sigmoid(a + b * logit)``, with three guarantees:

- ``b > 0`` with a floor: the slope per standard deviation of the training logits is at
  least ``SLOPE_FLOOR``. A fit below it is *flat* (the logits do not predict the 1-5 scale
  across lists) and raises CalibrationError: the run fails, nothing is promoted.
- a ceiling (``SLOPE_CEILING``): a fit that would saturate the sigmoid (binary labels push
  the slope to infinity) is capped and its intercept refitted, so the scores stay inside
  the range where float32 keeps them apart.
- after folding, the deployed head's within-list order of every given list (training and
  test) is compared pair by pair with the uncalibrated head's; any pair whose order or tie
  changed (float32 rounding can merge two close scores) rejects the fit. A head trained
  with the auxiliary MSE is then deployed as trained (its output is already on the 1-5
  scale; the record says why); a head trained without it has no usable scale, and
  CalibrationError fails the run. So ranking metrics before and after are identical, by
  construction or by failure, never silently different.

Used by ``training.train``'s loop only.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch

from modelloop.scoring.offline import ScoreHead

from .lists import ListData, TrainingDataError

FITTED = "1 + 4 * sigmoid(a + b * logit) on the training lists, folded into the head"
IDENTITY = "none: the head's own 1 + 4 * sigmoid(logit), trained on the 1-5 scale (auxiliary MSE)"
SLOPE_FLOOR = 0.05
"""The smallest slope allowed, per standard deviation of the training logits (issue 11's
collapse: 1e-7). Below it the calibration would squash the scores of a list together."""
SLOPE_CEILING = 3.0
"""The largest slope per logit standard deviation: keeps a + b * logit away from float32's
saturation of the sigmoid (where distinct logits round to the same 5.0)."""


class CalibrationError(TrainingDataError):
    """The calibration fit failed, would be flat, or would change an order within a list."""


def _standardised(logits: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    logits = logits.double()
    mean, std = float(logits.mean()), float(logits.std()) if logits.numel() > 1 else 0.0
    if not math.isfinite(std) or std < 1e-12:
        raise CalibrationError(
            f"the head's training logits are constant (sd {std:.3g}): there is no order to calibrate"
        )
    return (logits - mean) / std, mean, std


def _fit(z: torch.Tensor, targets: torch.Tensor, steps: int, slope: float | None) -> tuple[float, float]:
    """(a, b_z) minimising the MSE of 1 + 4 * sigmoid(a + b_z * z); b_z fixed when ``slope`` is given."""
    a = torch.zeros((), dtype=torch.float64, requires_grad=True)
    log_b = torch.zeros((), dtype=torch.float64, requires_grad=slope is None)
    if slope is not None:
        log_b = torch.tensor(math.log(slope), dtype=torch.float64)
    params = [a] if slope is not None else [a, log_b]
    optimiser = torch.optim.LBFGS(params, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = ((1 + 4 * torch.sigmoid(a + log_b.exp() * z) - targets) ** 2).mean()
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(a.detach()), float(log_b.detach().exp())


def fit_logistic_calibration(logits: torch.Tensor, targets: torch.Tensor, steps: int = 200) -> tuple[float, float]:
    """(a, b) minimising the MSE of 1 + 4 * sigmoid(a + b * logit) against the targets, with
    SLOPE_FLOOR <= b * sd(logits) <= SLOPE_CEILING.

    Raises CalibrationError when the fit is not finite or would be flat (below the floor).
    """
    if logits.shape != targets.shape or logits.numel() < 2:
        raise CalibrationError(f"the calibration needs two or more scores, got {logits.numel()}")
    z, mean, std = _standardised(logits)
    targets = targets.double()
    a, b_z = _fit(z, targets, steps, None)
    if not (math.isfinite(a) and math.isfinite(b_z)):
        raise CalibrationError(f"the calibration fit failed (a={a}, b={b_z}): not finite")
    if b_z < SLOPE_FLOOR:
        raise CalibrationError(
            f"the calibration fit is flat: slope {b_z:.3g} per logit standard deviation is below the floor "
            f"{SLOPE_FLOOR}, so it would tie the scenarios of a list; the head's scores do not predict the 1-5 "
            "scale across lists (train with the auxiliary MSE, mse_weight > 0)"
        )
    if b_z > SLOPE_CEILING:
        a, b_z = _fit(z, targets, steps, SLOPE_CEILING)
        if not math.isfinite(a):
            raise CalibrationError(f"the calibration fit failed (a={a} at the slope ceiling)")
    # Undo the standardisation: a + b_z * (logit - mean) / std
    return a - b_z * mean / std, b_z / std


def fold_calibration(head: ScoreHead, a: float, b: float) -> None:
    """Make head(x) = 1 + 4 * sigmoid(a + b * old_logit(x)) by rescaling its last layer."""
    last = head.net[-1]
    with torch.no_grad():
        last.weight.mul_(b)
        last.bias.mul_(b).add_(a)


def order_changes(before: torch.Tensor, after: torch.Tensor, data: ListData) -> int:
    """How many within-list pairs of ``data`` are ordered (or tied) differently by two score
    vectors [N] of its items."""
    if data.n_lists == 0:
        return 0
    index = data.padded_index()
    mask = index >= 0
    pair_mask = mask[:, :, None] & mask[:, None, :]
    changed = 0
    for chunk in range(0, len(index), 4096):  # [chunk, L, L] at a time
        rows = index[chunk : chunk + 4096].clamp(min=0)
        x, y = before[rows], after[rows]
        sx = torch.sign(x[:, :, None] - x[:, None, :])
        sy = torch.sign(y[:, :, None] - y[:, None, :])
        changed += int(((sx != sy) & pair_mask[chunk : chunk + 4096]).sum()) // 2
    return changed


def calibrate(head: ScoreHead, train: ListData, check: Sequence[ListData] = (), *, required: bool = True) -> dict:
    """Fit the calibration on the training lists, fold it into ``head`` (in eval mode) and
    check that no within-list order changed on ``train`` and the ``check`` lists; returns the
    version's calibration record.

    Raises CalibrationError when the fit fails or is flat, and when the folded head changes
    an order (float32 ties) and ``required``. Not ``required`` (the head was trained with the
    auxiliary MSE, so its own output is already on the 1-5 scale): such a fit is not folded,
    ``head`` is left as trained, and the record says why.
    """
    head.eval()
    lists = [train, *check]
    with torch.no_grad():
        logits = head.logits(train.features)
        raw = [head(data.features) for data in lists]
    a, b = fit_logistic_calibration(logits, train.targets)
    calibrated = copy.deepcopy(head)
    fold_calibration(calibrated, a, b)
    pairs = changed = 0
    with torch.no_grad():
        for before, data in zip(raw, lists):
            changed += order_changes(before, calibrated(data.features), data)
            lengths = data.offsets[1:] - data.offsets[:-1]
            pairs += int((lengths * (lengths - 1) // 2).sum())
    record = {
        "method": "builtin",  # for the scoring service: the head's own output is already calibrated
        "fitted": FITTED,
        "a": a,
        "b": b,
        "slope_per_logit_sd": b * float(logits.double().std()),
        "pairs_checked": pairs,
    }
    if changed:
        reason = (
            f"the calibration (a={a:.4g}, b={b:.4g}) changes the order of {changed} of {pairs} scenario pairs "
            "within lists (float32 ties)"
        )
        if required:
            raise CalibrationError(f"{reason}: not deployed")
        # The head trained on the 1-5 scale stays as it is: identity, no order can change.
        return record | {"fitted": IDENTITY, "a": 0.0, "b": 1.0, "rejected": reason}
    head.load_state_dict(calibrated.state_dict())
    return record
