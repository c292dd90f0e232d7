"""Losses against hand computations (paper section 4.2 and 5.1)."""

import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import (
    LossWeights,
    bce_loss,
    bpo_loss,
    combined_loss,
    listmle_loss,
    listmle_loss_reference,
    modality_ce_loss,
    mse_loss,
)


def lse(*xs):
    return math.log(sum(math.exp(x) for x in xs))


def batch(scores, targets, mask=None):
    scores = torch.tensor([scores], dtype=torch.float32)
    targets = torch.tensor([targets], dtype=torch.float32)
    mask = torch.ones_like(scores, dtype=torch.bool) if mask is None else torch.tensor([mask])
    return scores, targets, mask


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- ListMLE


def test_listmle_three_items_by_hand():
    # targets 3, 5, 1 -> pi* = (item 1, item 0, item 2), sorted scores (2.0, 1.0, 0.5)
    # L = [lse(2, 1, .5) - 2] + [lse(1, .5) - 1] + [lse(.5) - .5]
    expected = (lse(2.0, 1.0, 0.5) - 2.0) + (lse(1.0, 0.5) - 1.0) + 0.0
    loss = listmle_loss(*batch([1.0, 2.0, 0.5], [3.0, 5.0, 1.0]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_listmle_padding_does_not_change_value():
    plain = listmle_loss(*batch([1.0, 2.0, 0.5], [3.0, 5.0, 1.0]))
    padded = listmle_loss(
        *batch([100.0, 1.0, 2.0, -7.0, 0.5], [5.0, 3.0, 5.0, 0.0, 1.0], [False, True, True, False, True])
    )
    assert padded.item() == pytest.approx(plain.item(), rel=1e-6)


def test_listmle_means_over_lists_that_contribute():
    first = (lse(2.0, 1.0, 0.5) - 2.0) + (lse(1.0, 0.5) - 1.0)
    second = lse(0.0, 3.0) - 0.0  # targets 4 > 2: pi* = (item 0, item 1)
    scores = torch.tensor([[1.0, 2.0, 0.5], [0.0, 3.0, 9.0], [4.0, 0.0, 0.0]])
    targets = torch.tensor([[3.0, 5.0, 1.0], [4.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])
    assert listmle_loss(scores, targets, mask).item() == pytest.approx((first + second) / 2, rel=1e-6)


TIE_SCORES = [0.3, -0.2, 0.1]
TIE_TARGETS = [4.0, 4.0, 1.0]
# the two target orders consistent with the tie, by hand
TIE_ORDER_A = (lse(0.3, -0.2, 0.1) - 0.3) + (lse(-0.2, 0.1) + 0.2)  # (0, 1, 2)
TIE_ORDER_B = (lse(0.3, -0.2, 0.1) + 0.2) + (lse(0.3, 0.1) - 0.3)  # (1, 0, 2)


def test_listmle_ties_reproducible_with_fixed_generator():
    values = {listmle_loss(*batch(TIE_SCORES, TIE_TARGETS), generator=gen(7)).item() for _ in range(5)}
    assert len(values) == 1


def test_listmle_ties_average_over_tie_orders():
    values = [listmle_loss(*batch(TIE_SCORES, TIE_TARGETS), generator=gen(seed)).item() for seed in range(2000)]
    for v in values:
        assert v == pytest.approx(TIE_ORDER_A, rel=1e-5) or v == pytest.approx(TIE_ORDER_B, rel=1e-5)
    share_a = sum(v == pytest.approx(TIE_ORDER_A, rel=1e-5) for v in values) / len(values)
    assert share_a == pytest.approx(0.5, abs=0.05)  # binomial sd 0.011
    assert sum(values) / len(values) == pytest.approx((TIE_ORDER_A + TIE_ORDER_B) / 2, abs=0.01)


def test_listmle_ties_broken_independently_per_list():
    scores = torch.tensor([TIE_SCORES] * 4000)
    targets = torch.tensor([TIE_TARGETS] * 4000)
    loss = listmle_loss(scores, targets, torch.ones_like(scores, dtype=torch.bool), generator=gen(0))
    assert loss.item() == pytest.approx((TIE_ORDER_A + TIE_ORDER_B) / 2, abs=0.01)


def test_listmle_single_item_lists_give_zero_with_grad():
    scores = torch.tensor([[2.0, 0.0], [5.0, 1.0], [0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[True, False], [True, False], [False, False]])
    loss = listmle_loss(scores, torch.full((3, 2), 3.0), mask)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(scores.grad, torch.zeros_like(scores))


@pytest.mark.parametrize("n", [2, 3, 5])
def test_listmle_all_equal_scores_is_log_n_factorial(n):
    # every suffix term is log(k) when all scores are equal, whatever the targets
    loss = listmle_loss(*batch([1.5] * n, [5.0, 1.0, 3.0, 2.0, 4.0][:n]))
    assert loss.item() == pytest.approx(math.log(math.factorial(n)), rel=1e-6)


def test_listmle_loss_at_initialisation_is_log_n_factorial():
    torch.manual_seed(0)
    scores = 1e-3 * torch.randn(64, 5)
    targets = torch.randint(1, 6, (64, 5)).float()
    loss = listmle_loss(scores, targets, torch.ones_like(scores, dtype=torch.bool), generator=gen(0))
    assert loss.item() == pytest.approx(math.log(120), abs=0.01)


def test_listmle_large_scores_are_finite():
    # targets 1, 2, 3 -> pi* = (2, 1, 0), sorted scores (5e3, -1e4, 1e4)
    # [lse(5e3, -1e4, 1e4) - 5e3] + [lse(-1e4, 1e4) + 1e4] + 0 = 5e3 + 2e4 (exp(-5e3) vanishes)
    scores = torch.tensor([[1e4, -1e4, 5e3]], requires_grad=True)
    loss = listmle_loss(scores, torch.tensor([[1.0, 2.0, 3.0]]), torch.ones(1, 3, dtype=torch.bool))
    assert loss.item() == pytest.approx(2.5e4, rel=1e-6)
    loss.backward()
    assert torch.isfinite(scores.grad).all()


def test_listmle_low_precision_input_computed_in_fp32():
    scores, targets, mask = batch([1.0, 2.0, 0.5], [3.0, 5.0, 1.0])
    loss = listmle_loss(scores.bfloat16(), targets, mask)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(listmle_loss(scores, targets, mask).item(), rel=1e-6)


def random_batch(seed, size=32, length=5):
    g = gen(seed)
    scores = 3 * torch.randn(size, length, generator=g)
    targets = torch.randint(3, 16, (size, length), generator=g).float() / 3  # means of 3 ratings: ties
    lengths = torch.randint(0, length + 1, (size,), generator=g)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    return scores, targets, mask


@pytest.mark.parametrize("seed", range(5))
def test_listmle_vectorised_matches_reference(seed):
    scores, targets, mask = random_batch(seed)
    fast_scores = scores.clone().requires_grad_()
    slow_scores = scores.clone().requires_grad_()
    fast = listmle_loss(fast_scores, targets, mask, generator=gen(100 + seed))
    slow = listmle_loss_reference(slow_scores, targets, mask, generator=gen(100 + seed))
    assert torch.allclose(fast, slow, rtol=1e-5)
    fast.backward()
    slow.backward()
    assert torch.allclose(fast_scores.grad, slow_scores.grad, atol=1e-6)


def test_listmle_gradient_flows_to_real_items_only():
    scores = torch.tensor([[0.0, 0.0, 0.0, 3.0]], requires_grad=True)
    loss = listmle_loss(scores, torch.tensor([[5.0, 3.0, 1.0, 4.0]]), torch.tensor([[True, True, True, False]]))
    loss.backward()
    assert scores.grad[0, 0] < 0 < scores.grad[0, 2]  # raise the best, lower the worst
    assert scores.grad[0, 3] == 0
    assert scores.grad.sum().item() == pytest.approx(0.0, abs=1e-6)  # shift invariance


# ---------------------------------------------------------------- BPO, BCE, MSE, modality


def test_bpo_three_items_by_hand():
    # targets 3, 5, 3: pairs (1 over 0) and (1 over 2); the tied pair (0, 2) is ignored
    expected = (math.log1p(math.exp(-(2.0 - 1.0))) + math.log1p(math.exp(-(2.0 - 0.5)))) / 2
    assert bpo_loss(*batch([1.0, 2.0, 0.5], [3.0, 5.0, 3.0])).item() == pytest.approx(expected, rel=1e-6)


def test_bpo_ignores_padding_and_lists_without_pairs():
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(-1.5))) / 2
    scores = torch.tensor([[1.0, 2.0, 0.5, 9.0], [0.0, 1.0, 0.0, 0.0]])
    targets = torch.tensor([[3.0, 5.0, 3.0, 1.0], [2.0, 2.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    assert bpo_loss(scores, targets, mask).item() == pytest.approx(expected, rel=1e-6)


def test_bce_matches_torch_and_hand_value():
    scores, targets, mask = batch([0.0, 2.0, -1.0], [4.0, 1.0, 3.0], [True, True, False])
    # labels 1, 0: losses log 2 and log(1 + e^2)
    expected = (math.log(2.0) + math.log1p(math.exp(2.0))) / 2
    assert bce_loss(scores, targets, mask).item() == pytest.approx(expected, rel=1e-6)
    reference = F.binary_cross_entropy_with_logits(scores[0, :2], torch.tensor([1.0, 0.0]))
    assert bce_loss(scores, targets, mask).item() == pytest.approx(reference.item(), rel=1e-6)


def test_bce_score_of_exactly_2_5_is_unsafe():
    scores, targets, mask = batch([0.7, -0.3, 1.1], [2.5, 2.51, 2.49])
    reference = F.binary_cross_entropy_with_logits(scores[0], torch.tensor([0.0, 1.0, 0.0]))
    assert bce_loss(scores, targets, mask).item() == pytest.approx(reference.item(), rel=1e-6)


def test_mse_masked_by_hand():
    calibrated, targets, mask = batch([1.0, 3.0, 5.0], [2.0, 5.0, 1.0], [True, True, False])
    assert mse_loss(calibrated, targets, mask).item() == pytest.approx((1.0 + 4.0) / 2)


def test_modality_ce_masked_and_ignored_by_hand():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    modality = torch.tensor([[0, 2, -100, 1]])
    mask = torch.tensor([[True, True, True, False]])
    expected = ((lse(2.0, 0.0, 0.0) - 2.0) + (lse(0.0, 1.0, 0.0) - 0.0)) / 2
    assert modality_ce_loss(logits, modality, mask).item() == pytest.approx(expected, rel=1e-6)


def test_item_losses_average_lists_equally():
    calibrated = torch.tensor([[1.0, 1.0, 1.0], [5.0, 0.0, 0.0]])
    targets = torch.tensor([[2.0, 2.0, 2.0], [1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    assert mse_loss(calibrated, targets, mask).item() == pytest.approx((1.0 + 16.0) / 2)


# ---------------------------------------------------------------- combined


def test_combined_loss_sums_weighted_parts():
    scores, targets, mask = batch([1.0, 2.0, 0.5], [3.0, 5.0, 1.0])
    scores.requires_grad_()
    calibrated = torch.tensor([[3.0, 4.0, 2.0]])
    logits = torch.zeros(1, 3, 3)
    modality = torch.tensor([[0, 1, 2]])
    weights = LossWeights(listmle=1.0, mse=0.5, modality=0.2)
    total, parts = combined_loss(
        weights, scores, targets, mask, calibrated=calibrated, modality_logits=logits,
        modality_targets=modality, generator=gen(0),
    )
    assert set(parts) == {"listmle", "mse", "modality"}
    assert parts["mse"].item() == pytest.approx((0 + 1 + 1) / 3)
    assert parts["modality"].item() == pytest.approx(math.log(3))
    expected = parts["listmle"] + 0.5 * parts["mse"] + 0.2 * parts["modality"]
    assert total.item() == pytest.approx(expected.item())
    total.backward()
    assert scores.grad is not None and not parts["listmle"].requires_grad


def test_combined_loss_requires_inputs_of_enabled_parts():
    with pytest.raises(ValueError, match="calibrated"):
        combined_loss(LossWeights(mse=1.0), *batch([1.0, 2.0], [1.0, 2.0]))


def test_loss_weights_need_a_positive_weight():
    with pytest.raises(ValueError):
        LossWeights(listmle=0.0)
    with pytest.raises(ValueError):
        LossWeights(bpo=-1.0)
