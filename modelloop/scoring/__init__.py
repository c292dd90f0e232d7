"""The scorer interface: (image, setting, scenario text) pairs in, 1-5 scores out.

A scorer is a plain Python object with no database access: the Celery task
(``modelloop.tasks``) turns scenarios into ``ScoringInput`` rows, calls ``score`` on a
batch and writes the results through ``modelloop.services``. Implementations register
in ``SCORERS`` under the key stored in ``ModelVersion.scorer``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar, Sequence


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


class ScoringError(Exception):
    """The scorer as a whole cannot run (missing weights, bad config)."""


class Scorer(abc.ABC):
    """Scores batches of pairs. One instance is loaded per worker process and reused."""

    key: ClassVar[str]
    description: ClassVar[str]

    @abc.abstractmethod
    def score(self, inputs: Sequence[ScoringInput]) -> list[ScoringResult]:
        """Score every input, in order. A bad pair yields a failed result, never an exception."""


def scorer_registry() -> dict[str, type[Scorer]]:
    # Imported lazily: loading torch is slow and only worker processes need it.
    from .offline import EfficientNetMiniLMHeadScorer, ZeroShotTextBaselineScorer

    return {cls.key: cls for cls in (ZeroShotTextBaselineScorer, EfficientNetMiniLMHeadScorer)}
