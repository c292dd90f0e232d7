"""The scenario lists the training loop reads: ``ListData`` (feature rows, mode head) and
``ImageList`` (image and texts, mode lora), and the check that they can train a ranking.

Plain torch, no database: ``training.data`` builds these from an export file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

MODALITIES = ("text", "image", "both")


class TrainingDataError(ValueError):
    """The data cannot train a head (empty, all lists too short, NaN features, ...)."""


def offsets_of(lengths: Sequence[int]) -> torch.Tensor:
    """List boundaries [n + 1] (int64) of lists of these lengths: 0, then the running total."""
    return torch.tensor(np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]), dtype=torch.long)


@dataclass
class ListData:
    """Scenario lists, one per image context, as flat item arrays plus list boundaries.

    features  float32 [N, D]   backbone features of every scenario
    targets   float32 [N]      mean human score, 1-5
    modality  int64   [N]      majority modality 0 text / 1 image / 2 both, -100 if none
    offsets   int64   [n + 1]  list i holds items offsets[i]:offsets[i+1]
    scenario_ids  [N]          the scenarios' ids (optional)
    context_ids   [n]          each list's context id (optional; cross-validation groups by it)
    judgments     [N]          each scenario's individual initial 1-5 scores (optional; the
                               grounding-check share counts them, else the means)
    """

    features: torch.Tensor
    targets: torch.Tensor
    modality: torch.Tensor
    offsets: torch.Tensor
    scenario_ids: list[int] = field(default_factory=list)
    context_ids: list[int] = field(default_factory=list)
    judgments: list[list[float]] | None = None

    @property
    def n_lists(self) -> int:
        return len(self.offsets) - 1

    def check(self, name: str) -> None:
        if self.n_lists == 0:
            raise TrainingDataError(f"the {name} split has no lists")
        if not torch.isfinite(self.features).all():
            bad = int((~torch.isfinite(self.features).all(dim=1)).sum())
            raise TrainingDataError(f"the {name} split has {bad} scenario(s) with NaN or infinite features")
        if not torch.isfinite(self.targets).all():
            raise TrainingDataError(f"the {name} split has non-finite target scores")

    def padded_index(self) -> torch.Tensor:
        """[n_lists, L] item indices per list, -1 for padding (L = the longest list)."""
        lengths = self.offsets[1:] - self.offsets[:-1]
        width = int(lengths.max()) if len(lengths) else 0
        positions = torch.arange(width).unsqueeze(0)
        index = self.offsets[:-1].unsqueeze(1) + positions
        return torch.where(positions < lengths.unsqueeze(1), index, torch.full_like(index, -1))

    def lists(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(true, index) per list, for evaluation."""
        targets = self.targets.numpy()
        return [
            (targets[a:b], np.arange(a, b))
            for a, b in zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist())
        ]

    def batch(self, rows: torch.Tensor, index: torch.Tensor | None = None):
        """Padded (features [B, L, D], targets [B, L], modality [B, L], mask [B, L]) of the
        lists in ``rows``; ``index`` is ``padded_index()``, passed in when reused."""
        item = (self.padded_index() if index is None else index)[rows]
        mask = item >= 0
        safe = item.clamp(min=0)
        return self.features[safe], self.targets[safe], self.modality[safe], mask

    def subset(self, list_indices: list[int]) -> ListData:
        """The lists at these positions, in this order."""
        starts, ends = self.offsets[:-1], self.offsets[1:]
        pieces = [torch.arange(int(starts[i]), int(ends[i])) for i in list_indices]
        index = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)
        items = index.tolist()
        return ListData(
            features=self.features[index],
            targets=self.targets[index],
            modality=self.modality[index],
            offsets=offsets_of([len(p) for p in pieces]),
            scenario_ids=[self.scenario_ids[i] for i in items] if self.scenario_ids else [],
            context_ids=[self.context_ids[i] for i in list_indices] if self.context_ids else [],
            judgments=[self.judgments[i] for i in items] if self.judgments is not None else None,
        )

    def list_judgments(self) -> list[list[list[float]]] | None:
        """The judgments per list, per item (for ``metrics.evaluate_lists``), or None."""
        if self.judgments is None:
            return None
        bounds = self.offsets.tolist()
        return [self.judgments[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    @staticmethod
    def concat(parts: Sequence[ListData]) -> ListData:
        """The lists of ``parts``, one after the other (ids and judgments kept where all have them)."""
        lengths = [int(n) for part in parts for n in (part.offsets[1:] - part.offsets[:-1])]
        return ListData(
            features=torch.cat([part.features for part in parts]),
            targets=torch.cat([part.targets for part in parts]),
            modality=torch.cat([part.modality for part in parts]),
            offsets=offsets_of(lengths),
            scenario_ids=[i for part in parts for i in part.scenario_ids]
            if all(len(part.scenario_ids) == len(part.targets) for part in parts) else [],
            context_ids=[i for part in parts for i in part.context_ids]
            if all(len(part.context_ids) == part.n_lists for part in parts) else [],
            judgments=[j for part in parts for j in part.judgments]
            if all(part.judgments is not None for part in parts) else None,
        )


@dataclass
class ImageList:
    """One image context's scenarios, as the VLM sees them (mode "lora")."""

    context_id: int
    image_path: str  # absolute path of the context's image file
    setting: str
    texts: list[str]
    targets: list[float]  # mean human score of each scenario, 1-5
    modality: list[int]  # majority modality 0 text / 1 image / 2 both, -100 if none
    scenario_ids: list[int]


def as_list_data(lists: Sequence[ImageList], features: torch.Tensor | None = None) -> ListData:
    """The lists as ListData; ``features`` [N, D] in the lists' flattened order (default: none, [N, 0])."""
    lengths = [len(lst.texts) for lst in lists]
    return ListData(
        features=features if features is not None else torch.zeros(sum(lengths), 0),
        targets=torch.tensor([t for lst in lists for t in lst.targets], dtype=torch.float32),
        modality=torch.tensor([m for lst in lists for m in lst.modality], dtype=torch.long),
        offsets=offsets_of(lengths),
        scenario_ids=[sid for lst in lists for sid in lst.scenario_ids],
    )


def check_lists(loss: str, train: ListData, test: ListData) -> None:
    """TrainingDataError unless the lists can train a ranking with this loss (both modes)."""
    train.check("train")
    test.check("test")
    if int((train.offsets[1:] - train.offsets[:-1]).max()) < 2 and loss in ("listmle", "bpo"):
        raise TrainingDataError("every training list has a single scenario: a ranking loss has nothing to learn")
    if bool((train.targets == train.targets[0]).all()):
        raise TrainingDataError(f"the training scores are all equal ({float(train.targets[0])}): nothing to rank")
