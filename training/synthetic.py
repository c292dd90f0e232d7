"""Synthetic scenario lists from a known scoring function, for sanity tests and benchmarks.

Each list is one "image": 3-5 scenarios whose features are random vectors; the human mean
score is a fixed nonlinear function of the features (plus noise), squashed onto 1-5. A
head that learns the function recovers the ranking, which the tests and bench/train.py
check (test NDCG@5 > 0.95).
"""

from __future__ import annotations

import numpy as np
import torch

from .lists import ListData


def synthetic_lists(
    n_lists: int,
    *,
    dim: int = 64,
    min_len: int = 3,
    max_len: int = 5,
    noise: float = 0.1,
    seed: int = 0,
    function_seed: int = 0,
    total_items: int | None = None,
) -> ListData:
    """Lists whose true scores follow 1 + 4 * sigmoid(f(x)) + noise.

    `seed` draws the lists; `function_seed` fixes f, so train and test splits drawn with
    different seeds share one truth.

    With `total_items`, list lengths are drawn so that they add up to it (as in MM-SCALE:
    9,260 lists, 32,212 scenarios).
    """
    rng = np.random.default_rng(seed)
    if total_items is None:
        lengths = rng.integers(min_len, max_len + 1, size=n_lists)
    else:
        lengths = np.full(n_lists, min_len)
        extra = total_items - lengths.sum()
        while extra > 0:
            grow = rng.choice(np.flatnonzero(lengths < max_len), size=min(extra, n_lists), replace=False)
            lengths[grow] += 1
            extra = total_items - lengths.sum()
    n = int(lengths.sum())
    features = rng.standard_normal((n, dim)).astype(np.float32)
    # The "true" function: a random direction plus a nonlinear interaction.
    truth = np.random.default_rng(10_000 + function_seed)
    w = truth.standard_normal(dim) / np.sqrt(dim)
    v = truth.standard_normal(dim) / np.sqrt(dim)
    f = features @ w + 0.5 * np.tanh(features @ v) + noise * rng.standard_normal(n)
    targets = 1 + 4 / (1 + np.exp(-1.5 * f))
    targets = np.round(targets * 3) / 3  # means of three 1-5 ratings: thirds, with ties
    modality = rng.integers(0, 3, size=n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return ListData(
        features=torch.from_numpy(features),
        targets=torch.from_numpy(targets.astype(np.float32)),
        modality=torch.from_numpy(modality.astype(np.int64)),
        offsets=torch.from_numpy(offsets.astype(np.int64)),
        scenario_ids=list(range(n)),
    )


def offset_lists(
    n_lists: int,
    *,
    text_dim: int = 32,
    image_dim: int = 32,
    min_len: int = 3,
    max_len: int = 5,
    offset_scale: float = 1.5,
    noise: float = 0.1,
    seed: int = 0,
    function_seed: int = 0,
    binary: bool = False,
) -> ListData:
    """Lists that differ mainly by a per-list offset, as real contexts do (issue 11).

    Each scenario's features are [text part (its own) | image part (the same for every
    scenario of the list)]. The truth is 1 + 4 * sigmoid(1.5 * (g(text) + offset_scale *
    h(image))) + noise: the image sets the level of the whole list, the text the order within
    it. A ranking loss alone learns nothing about h (it is constant within a list); a
    calibration fitted across lists on such logits collapses. ``binary``: targets 1 or 5 only.
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len + 1, size=n_lists)
    n = int(lengths.sum())
    text = rng.standard_normal((n, text_dim)).astype(np.float32)
    image = np.repeat(rng.standard_normal((n_lists, image_dim)).astype(np.float32), lengths, axis=0)
    truth = np.random.default_rng(20_000 + function_seed)
    w = truth.standard_normal(text_dim) / np.sqrt(text_dim)
    u = truth.standard_normal(image_dim) / np.sqrt(image_dim)
    f = text @ w + offset_scale * np.tanh(image @ u) + noise * rng.standard_normal(n)
    targets = 1 + 4 / (1 + np.exp(-1.5 * f))
    targets = np.where(targets > 3, 5.0, 1.0) if binary else np.round(targets * 3) / 3
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return ListData(
        features=torch.from_numpy(np.concatenate([text, image], axis=1)),
        targets=torch.from_numpy(targets.astype(np.float32)),
        modality=torch.from_numpy(rng.integers(0, 3, size=n).astype(np.int64)),
        offsets=torch.from_numpy(offsets.astype(np.int64)),
        scenario_ids=list(range(n)),
    )
