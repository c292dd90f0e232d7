"""Scorers that run entirely from locally installed weights (no hub, no database).

- ``ZeroShotTextBaselineScorer``: text-only, no training; the default until a head exists.
- ``EfficientNetMiniLMHeadScorer``: frozen EfficientNet-Lite0 + MiniLM features
  (``features.py``) fed to a small trained MLP head (``ScoreHead``).
"""

from __future__ import annotations

import math
import os
from typing import ClassVar, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import FeatureScorer, Scorer, ScoringError, ScoringInput, ScoringResult
from .features import (
    BACKBONE_REF,
    FEATURE_DIM,
    encode_texts,
    extract_features,
    image_model,
    pair_text,
    text_model,
)

__all__ = [
    "BACKBONE_REF",
    "FEATURE_DIM",
    "EfficientNetMiniLMHeadScorer",
    "ScoreHead",
    "ZeroShotTextBaselineScorer",
    "extract_features",
    "load_head",
    "save_head",
]

ACCEPTABLE_ANCHORS = (
    "a kind, safe, helpful and morally acceptable action",
    "helping, protecting or caring for someone",
    "an honest, fair and respectful thing to do",
    "a responsible action that helps someone in need",
    "an ordinary, harmless everyday activity",
)
UNACCEPTABLE_ANCHORS = (
    "a cruel, dangerous, harmful and morally unacceptable action",
    "hurting, endangering or abusing someone",
    "a dishonest, unfair or illegal thing to do",
    "a selfish or negligent action that ignores someone in need",
    "cheating, stealing or lying",
)


def _config_number(
    config: dict, name: str, default: float, *, minimum: float, maximum: float = math.inf
) -> float:
    """Read one numeric setting, failing loudly (ScoringError) on a bad model-version config."""
    value = config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value < maximum:
        raise ScoringError(f"config {name!r} must be a number in [{minimum}, {maximum}), got {value!r}")
    return float(value)


def _config_int(config: dict, name: str, default: int) -> int:
    """Like _config_number, for a whole number >= 1."""
    value = _config_number(config, name, default, minimum=1)
    if value != int(value):
        raise ScoringError(f"config {name!r} must be a whole number, got {config.get(name)!r}")
    return int(value)


class ZeroShotTextBaselineScorer(Scorer):
    """Untrained placeholder so every pair has a model score from day one."""

    key: ClassVar[str] = "zero-shot-text-baseline"
    description: ClassVar[str] = (
        "Zero-shot text-only baseline: cosine similarity of the MiniLM text embedding to "
        "acceptable vs unacceptable descriptions, mapped to 1-5. It ignores the image; it is "
        "a placeholder until a trained head is promoted."
    )

    def __init__(self, *, config: dict, head_weights_path: str | None = None) -> None:
        # head_weights_path is accepted for a uniform constructor and ignored: nothing is trained.
        self.temperature = _config_number(config, "temperature", 8.0, minimum=1e-6)
        acceptable = encode_texts(ACCEPTABLE_ANCHORS).mean(dim=0)
        unacceptable = encode_texts(UNACCEPTABLE_ANCHORS).mean(dim=0)
        # mean cosine to one set minus mean cosine to the other == dot with this direction
        self.direction = acceptable - unacceptable

    def score(self, inputs: Sequence[ScoringInput]) -> list[ScoringResult]:
        embeddings = encode_texts([pair_text(item.setting, item.text) for item in inputs])
        scores = 3.0 + 2.0 * torch.tanh(embeddings @ self.direction * self.temperature)
        return [ScoringResult(item.scenario_id, float(s)) for item, s in zip(inputs, scores)]


class ScoreHead(nn.Module):
    """MLP from pair features to a calibrated 1-5 score; the only trained part of the scorer."""

    def __init__(self, *, in_dim: int = FEATURE_DIM, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    @classmethod
    def from_config(cls, config: dict, *, in_dim: int = FEATURE_DIM) -> ScoreHead:
        """A head over `in_dim`-d features shaped by config keys "hidden" and "dropout"."""
        if not isinstance(config, dict):
            raise ScoringError(f"head config must be an object, got {config!r}")
        hidden = _config_int(config, "hidden", 256)
        dropout = _config_number(config, "dropout", 0.1, minimum=0.0, maximum=1.0)
        return cls(in_dim=in_dim, hidden=hidden, dropout=dropout)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Unbounded scores [n]; ranking losses such as ListMLE can train on these directly."""
        return self.net(features).squeeze(-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Scores [n] on the annotators' 1-5 scale."""
        return 1.0 + 4.0 * torch.sigmoid(self.logits(features))


def save_head(head: ScoreHead, path: str | os.PathLike[str]) -> None:
    """Write the head's fp32 weights as safetensors (no pickle: safe to load from uploads)."""
    state = {name: tensor.detach().float().cpu().contiguous() for name, tensor in head.state_dict().items()}
    save_file(state, os.fspath(path))


def load_head(path: str | os.PathLike[str], config: dict, *, in_dim: int = FEATURE_DIM) -> ScoreHead:
    """Build a head over `in_dim`-d features shaped by ``config`` and fill it from ``path``,
    in eval mode on CPU.

    Raises ScoringError when the file is missing, unreadable, does not match the config
    or holds non-finite numbers: the model version is unusable, not one pair.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ScoringError(f"head weights file not found: {path}")
    try:
        state = load_file(path)
    except Exception as exc:  # safetensors reports damage with several exception types
        raise ScoringError(f"head weights file {path} is not valid safetensors: {exc}") from exc
    head = ScoreHead.from_config(config, in_dim=in_dim)
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ScoringError(f"head weights in {path} do not fit {in_dim}-d features and config {config!r}: {exc}") from exc
    if not all(torch.isfinite(tensor).all() for tensor in state.values()):
        raise ScoringError(f"head weights in {path} contain NaN or infinite values")
    return head.float().eval().requires_grad_(False)


class EfficientNetMiniLMBackbone:
    """The frozen feature extractor on its own: what training needs before any head exists.

    Has the ``backbone_ref`` / ``feature_dim`` / ``features`` of a FeatureScorer, so the
    feature cache (``modelloop.services.features_for``) serves it the same way.
    """

    backbone_ref = BACKBONE_REF
    feature_dim = FEATURE_DIM

    def features(self, inputs: Sequence[ScoringInput]) -> tuple[torch.Tensor, list[str]]:
        return extract_features(inputs)


class EfficientNetMiniLMHeadScorer(FeatureScorer):
    """Frozen image + text backbones and a trained MLP head: the scorer that sees the image."""

    key: ClassVar[str] = "efficientnet-minilm-mlp"
    description: ClassVar[str] = (
        "EfficientNet-Lite0 image features and MiniLM text features (both frozen, ImageNet / "
        "sentence-similarity pretrained), scored 1-5 by a small MLP head trained on annotator "
        "judgments."
    )
    backbone_ref = BACKBONE_REF
    feature_dim = FEATURE_DIM

    def __init__(self, *, config: dict, head_weights_path: str | None = None) -> None:
        if not head_weights_path:
            raise ScoringError(f"scorer {self.key!r} needs head weights; none were given")
        self.head = load_head(head_weights_path, config)
        # Load both backbones now so the first batch is not slow and a broken install fails here.
        image_model()
        text_model()

    def features(self, inputs: Sequence[ScoringInput]) -> tuple[torch.Tensor, list[str]]:
        return extract_features(inputs)

    def head_scores(self, features: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.head(features.float().cpu())
