"""Which judgments count: the one rule the export and the researchers' figures share.

Pure numpy, no Django: ``select_judgments`` takes columns of judgment rows and the options
and says which rows count, with the counts the export reports. Steps 1-4 of "What is
exported" in docs/dataset-export.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .format import SOURCES


@dataclass(frozen=True)
class Selection:
    """What ``select_judgments`` decided. ``counted``: one bool per row given.

    ``pair``: the row's (annotator, scenario) pair as a number from 0; ``pair_first``: the
    index of each pair's first row (so callers can order or join rows per pair without
    grouping them again). Every row lands in exactly one of ``counted`` or the six counts.
    """

    counted: np.ndarray
    pair: np.ndarray
    pair_first: np.ndarray
    canary_judgments: int
    screened_judgments: int
    imported_judgments: int
    failed_canary_judgments: int
    initial_replaced_by_reconfirmation: int
    reconfirmed_unused: int


def pair_key(annotator: np.ndarray, scenario: np.ndarray) -> np.ndarray:
    """One whole number per (annotator, scenario) row: equal exactly for equal pairs, and
    sorted by scenario, then annotator (annotator and scenario ids are >= 0)."""
    width = int(annotator.max()) + 1 if annotator.size else 1
    return scenario * width + annotator


def select_judgments(
    *,
    annotator: np.ndarray,
    scenario: np.ndarray,
    reconfirmed: np.ndarray,
    screened: np.ndarray,
    canary: np.ndarray,
    canary_failed: np.ndarray,
    imported: np.ndarray,
    source: str,
    include_screened: bool,
    include_canaries: bool,
    include_imported: bool,
) -> Selection:
    """Which of the judgment rows count, one row per element of each array.

    ``annotator``, ``scenario``: ids; ``reconfirmed``: the row is the answer after a
    grounding check (else the initial one); ``screened``: its annotator is screened out
    now; ``canary``: its scenario is a canary; ``canary_failed``: ``canary_passed`` is
    false; ``imported``: the row is an imported rating (``annotator`` is then the id of an
    imported rater, a number space of its own; such a row is never screened, reconfirmed
    or a failed canary). At most one initial and one reconfirmed row per (annotator,
    scenario), as the database's unique constraints guarantee. In this order:

    1. unless ``include_canaries``, rows of canary scenarios go (``canary_judgments``);
    2. unless ``include_screened``, rows of screened-out annotators go (``screened_judgments``);
       unless ``include_imported``, imported ratings go (``imported_judgments``);
    3. where a remaining row of a pair failed its canary, the pair's remaining rows go
       (``failed_canary_judgments``);
    4. one row per pair: with ``source="reconfirmed"`` the reconfirmed row where there is
       one (the initial row it replaces: ``initial_replaced_by_reconfirmation``), else the
       initial one; with ``"initial"`` the initial row (reconfirmed ones: ``reconfirmed_unused``).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    canary, screened, reconfirmed = (np.asarray(a, dtype=bool) for a in (canary, screened, reconfirmed))
    canary_failed, imported = np.asarray(canary_failed, dtype=bool), np.asarray(imported, dtype=bool)
    keep = np.ones(reconfirmed.size, dtype=bool)
    if not include_canaries:
        keep &= ~canary
    canary_judgments = int(reconfirmed.size - keep.sum())
    screened_judgments = 0
    if not include_screened:
        screened_judgments = int((keep & screened).sum())
        keep &= ~screened
    imported_judgments = 0
    if not include_imported:
        imported_judgments = int((keep & imported).sum())
        keep &= ~imported
    # An imported rater and an annotator with the same id are two people: two pairs.
    rater = np.asarray(annotator, dtype=np.int64) * 2 + imported
    key = pair_key(rater, np.asarray(scenario, dtype=np.int64))
    _, pair_first, pair = np.unique(key, return_index=True, return_inverse=True)
    pair = pair.reshape(-1)  # numpy 2 may keep the input's shape
    n_pairs = pair_first.size

    failed_pair = np.zeros(n_pairs, dtype=bool)
    failed_pair[pair[keep & canary & canary_failed]] = True
    failed = keep & failed_pair[pair]
    keep &= ~failed

    if source == "reconfirmed":
        has_reconfirmed = np.zeros(n_pairs, dtype=bool)
        has_reconfirmed[pair[keep & reconfirmed]] = True
        dropped = keep & ~reconfirmed & has_reconfirmed[pair]
        replaced, unused = int(dropped.sum()), 0
    else:
        dropped = keep & reconfirmed
        replaced, unused = 0, int(dropped.sum())
    return Selection(
        counted=keep & ~dropped,
        pair=pair,
        pair_first=pair_first,
        canary_judgments=canary_judgments,
        screened_judgments=screened_judgments,
        imported_judgments=imported_judgments,
        failed_canary_judgments=int(failed.sum()),
        initial_replaced_by_reconfirmation=replaced,
        reconfirmed_unused=unused,
    )
