"""Training losses over padded batches of scenario lists (paper section 4.2 and 5.1).

Shared convention:
    scores   float [B, L]  raw head outputs, one per scenario (any real numbers)
    targets  float [B, L]  human mean scores on the 1-5 scale
    mask     bool  [B, L]  True = a real scenario, False = padding

B lists (one per image context) padded to the longest list L. Padding never
contributes to a value or a gradient, whatever numbers it holds. Every loss is
a per-list quantity averaged over the lists that contribute, so a list of five
scenarios weighs the same as a list of three, and a batch where no list
contributes returns 0 that still has a grad_fn (backward() works, no NaN).
Losses are computed in at least fp32 even when the head runs in bf16/fp16.
"""

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

UNSAFE_THRESHOLD = 2.5
"""A scenario is unsafe when its score is <= 2.5 (paper: 'unsafe if s <= 2.5')."""

IGNORE_MODALITY = -100
"""Modality target for items without a majority modality: ignored by modality_ce_loss."""


def _upcast(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _mean_over_lists(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over the `valid` entries of each list, then over lists with any.

    values, valid: [B, ...] (items [B, L] or pairs [B, L, L]).
    """
    values = torch.where(valid, values, torch.zeros_like(values))
    counts = valid.flatten(1).sum(1)
    per_list = values.flatten(1).sum(1) / counts.clamp(min=1)
    return per_list.sum() / (counts > 0).sum().clamp(min=1)


def _tie_break_keys(scores: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform random keys [B, L]; among equal targets the smaller key ranks first."""
    device = generator.device if generator is not None else scores.device
    return torch.rand(scores.shape, generator=generator, device=device).to(scores.device)


def listmle_loss(
    scores: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """ListMLE (paper eq. in section 4.2), vectorised over the batch.

    Each list is sorted by target descending into pi*; the loss of a list is
        sum_t [ logsumexp(s_pi*(t..n)) - s_pi*(t) ],
    the negative log-likelihood of pi* under the Plackett-Luce model of the scores.
    Ties in targets are broken uniformly at random per list (random keys drawn
    from `generator`, or the global RNG when None), so in expectation the loss
    averages over all target orders consistent with the human scores.
    Padding is placed at the end with score -inf, so it adds nothing to any suffix.
    Suffix log-sum-exps use torch.logcumsumexp: stable for large scores.

    Shapes: scores, targets, mask [B, L]. Returns a scalar: the mean over lists
    with >= 2 real items (a 1-item list has nothing to rank and is left out).
    """
    scores = _upcast(scores)
    keys = _tie_break_keys(scores, generator)
    shuffle = keys.argsort(dim=1)
    shuffled_targets = torch.where(mask, targets.to(scores.dtype), -torch.inf).gather(1, shuffle)
    order = shuffle.gather(1, shuffled_targets.argsort(dim=1, descending=True, stable=True))

    sorted_mask = mask.gather(1, order)
    sorted_scores = torch.where(sorted_mask, scores.gather(1, order), -torch.inf)
    suffix_lse = torch.logcumsumexp(sorted_scores.flip(1), dim=1).flip(1)
    terms = torch.where(sorted_mask, suffix_lse - sorted_scores, torch.zeros_like(scores))

    contributing = mask.sum(1) >= 2
    per_list = torch.where(contributing, terms.sum(1), torch.zeros_like(terms[:, 0]))
    return per_list.sum() / contributing.sum().clamp(min=1)


def listmle_loss_reference(
    scores: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-list Python loop version of listmle_loss, for tests and the benchmark.

    Draws the same tie-breaking keys as listmle_loss, so with equal generators
    the two agree even when targets tie.
    """
    scores = _upcast(scores)
    keys = _tie_break_keys(scores, generator)
    losses = []
    for b in range(scores.shape[0]):
        items = [i for i in range(scores.shape[1]) if mask[b, i]]
        if len(items) < 2:
            continue
        ranked = sorted(items, key=lambda i: (-float(targets[b, i]), float(keys[b, i])))
        s = scores[b, ranked]
        losses.append(sum(torch.logsumexp(s[t:], dim=0) - s[t] for t in range(len(ranked))))
    if not losses:
        return scores.sum() * 0.0
    return torch.stack(losses).mean()


def bpo_loss(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pairwise logistic loss (the BPO baseline of section 5.1).

    -log sigmoid(s_i - s_j) for every ordered pair (i, j) of real items in a list
    with target_i > target_j; pairs with equal targets and pairs touching padding
    are ignored. Shapes [B, L]; mean over the pairs of each list, then over lists
    with at least one pair (with one list per batch, as in the paper: the mean over pairs).
    """
    scores = _upcast(scores)
    diff = scores[:, :, None] - scores[:, None, :]
    pairs = (targets[:, :, None] > targets[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    return _mean_over_lists(F.softplus(-diff), pairs)


def bce_loss(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits on targets binarised at 2.5 (the BCE baseline).

    label = 1 ("acceptable") when target > 2.5, else 0; exactly 2.5 is unsafe (0),
    matching the paper's "unsafe if s <= 2.5". `scores` are logits. Shapes [B, L];
    mean over the real items of each list, then over lists with any.
    """
    scores = _upcast(scores)
    labels = (targets > UNSAFE_THRESHOLD).to(scores.dtype)
    per_item = F.binary_cross_entropy_with_logits(scores, labels, reduction="none")
    return _mean_over_lists(per_item, mask)


def mse_loss(calibrated: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Auxiliary squared error on the 1-5 scale (section 4.3).

    calibrated: [B, L] scores already mapped to 1-5; targets, mask [B, L].
    Mean over the real items of each list, then over lists with any.
    """
    calibrated = _upcast(calibrated)
    return _mean_over_lists((calibrated - targets.to(calibrated.dtype)) ** 2, mask)


def modality_ce_loss(
    logits: torch.Tensor, modality_targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the modality head (0 text, 1 image, 2 both).

    logits [B, L, 3]; modality_targets long [B, L]; mask [B, L]. Items that are
    padding or whose target is IGNORE_MODALITY (-100, no majority modality) are
    ignored. Mean over the counted items of each list, then over lists with any.
    """
    logits = _upcast(logits)
    valid = mask & (modality_targets != IGNORE_MODALITY)
    safe_targets = modality_targets.masked_fill(~valid, IGNORE_MODALITY)
    per_item = F.cross_entropy(
        logits.flatten(0, 1), safe_targets.flatten(), ignore_index=IGNORE_MODALITY, reduction="none"
    ).view(mask.shape)
    return _mean_over_lists(per_item, valid)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss parts; a part with weight 0 is not computed.

    Defaults: the paper's method (ListMLE only). Baselines: LossWeights(listmle=0, bpo=1)
    or LossWeights(listmle=0, bce=1); multitask: add mse and/or modality.
    """

    listmle: float = 1.0
    bpo: float = 0.0
    bce: float = 0.0
    mse: float = 0.0
    modality: float = 0.0

    def __post_init__(self):
        values = [getattr(self, f.name) for f in fields(self)]
        if any(v < 0 for v in values) or not any(v > 0 for v in values):
            raise ValueError(f"loss weights must be >= 0 with at least one > 0, got {self}")


def combined_loss(
    weights: LossWeights,
    scores: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    *,
    calibrated: torch.Tensor | None = None,
    modality_logits: torch.Tensor | None = None,
    modality_targets: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the enabled parts.

    Returns (total, parts): total is the scalar to backpropagate; parts maps each
    enabled part's name to its unweighted value, detached, for logging.
    `calibrated` is needed when weights.mse > 0, the modality inputs when
    weights.modality > 0.
    """
    compute = {
        "listmle": lambda: listmle_loss(scores, targets, mask, generator=generator),
        "bpo": lambda: bpo_loss(scores, targets, mask),
        "bce": lambda: bce_loss(scores, targets, mask),
        "mse": lambda: mse_loss(_required(calibrated, "calibrated"), targets, mask),
        "modality": lambda: modality_ce_loss(
            _required(modality_logits, "modality_logits"),
            _required(modality_targets, "modality_targets"),
            mask,
        ),
    }
    total = None
    parts = {}
    for name, part in compute.items():
        weight = getattr(weights, name)
        if weight == 0:
            continue
        value = part()
        parts[name] = value.detach()
        total = weight * value if total is None else total + weight * value
    return total, parts


def _required(value: torch.Tensor | None, name: str) -> torch.Tensor:
    if value is None:
        raise ValueError(f"{name} is required by the loss weights")
    return value
