"""The scorer interface: (image, setting, scenario text) pairs in, 1-5 scores out.

Pure Python and torch, no database: ``modelloop.services`` builds the inputs and stores
the results. Anything may import it; it imports nothing else of the project. The
implementations (``offline``, ``hf_vlm``) register in ``scorer_registry()`` under the key
stored in ``ModelVersion.scorer``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ScoringInput:
    scenario_id: int
    image_path: str  # absolute path of the context's image file
    setting: str  # the context's setting text, e.g. "child crossing a street"
    text: str  # the scenario, e.g. "holding the child's hand"


@dataclass(frozen=True)
class ScoringResult:
    scenario_id: int
    score: float | None  # calibrated to the 1-5 scale; None when the pair failed
    error: str = ""  # why the pair failed (corrupt image, ...); empty when scored

    @property
    def ok(self) -> bool:
        return self.score is not None


# The files of a peft LoRA adapter directory: what is zipped into ModelVersion.lora_adapter.
LORA_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def scoring_results(inputs: Sequence[ScoringInput], scores: Iterable[float], errors: Sequence[str]) -> list[ScoringResult]:
    """One result per input: its score, or the failure when its error is not empty."""
    return [
        ScoringResult(item.scenario_id, None, error) if error else ScoringResult(item.scenario_id, float(s))
        for item, s, error in zip(inputs, scores, errors)
    ]


class ScoringError(Exception):
    """The scorer as a whole cannot run (missing weights, bad config)."""


class Scorer(abc.ABC):
    """Scores batches of pairs. One instance is loaded per worker process and reused."""

    key: ClassVar[str]
    description: ClassVar[str]

    @abc.abstractmethod
    def score(self, inputs: Sequence[ScoringInput]) -> list[ScoringResult]:
        """Score every input, in order. A bad pair yields a failed result, never an exception."""


class FeatureScorer(Scorer):
    """A scorer split into a frozen backbone that turns pairs into features and a small
    head that turns features into 1-5 scores.

    Because the backbone is frozen, its features are cached per (``backbone_ref``,
    scenario) by ``modelloop.services.feature_cache``: retraining the head and rescoring after a
    promotion never run the backbone again. ``backbone_ref`` must change whenever the
    backbone's weights or preprocessing change (that is what invalidates the cache).
    """

    backbone_ref: str
    feature_dim: int

    @abc.abstractmethod
    def features(self, inputs: Sequence[ScoringInput]) -> tuple["torch.Tensor", list[str]]:
        """Features [n, feature_dim] float32 and one error per input ("" when fine; failed rows are zeros)."""

    @abc.abstractmethod
    def head_scores(self, features: "torch.Tensor") -> "torch.Tensor":
        """Scores [n] on the 1-5 scale for features [n, feature_dim]."""

    def score(self, inputs: Sequence[ScoringInput]) -> list[ScoringResult]:
        features, errors = self.features(inputs)
        return scoring_results(inputs, self.head_scores(features), errors)


def scorer_registry() -> dict[str, type[Scorer]]:
    # Imported lazily: loading torch is slow and only worker processes need it.
    from .hf_vlm import HFVLMHeadScorer, HFVLMZeroShotScorer
    from .offline import EfficientNetMiniLMHeadScorer, ZeroShotTextBaselineScorer
    from .prior import ImageAwarePriorScorer

    return {
        cls.key: cls
        for cls in (
            ZeroShotTextBaselineScorer, ImageAwarePriorScorer, EfficientNetMiniLMHeadScorer, HFVLMZeroShotScorer,
            HFVLMHeadScorer,
        )
    }
