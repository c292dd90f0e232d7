"""The training loop, top to bottom: config, model, evaluation, the one loop, train_head.

One loop (``fit``) serves both modes; they differ only in their ``ListEncoder`` (how a
batch of lists becomes features, and what trains besides the head): ``CachedFeatures``
here (mode head), ``training.lora.LoraVLM`` (mode lora). No database. Spec: docs/training.md.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import torch
from django.conf import settings
from torch import nn

from modelloop.scoring.offline import ScoreHead

from . import losses, metrics
from .calibration import calibrate
from .lists import MODALITIES, ListData, TrainingDataError, check_lists


# --- config ------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    loss: str = "listmle"  # "listmle" (the paper's), or the baselines "bpo" and "bce"
    epochs: int = 5
    lr: float = 1e-4
    weight_decay: float = 0.01
    lists_per_step: int = 1  # the paper trains on one list per step
    hidden: int = 256
    dropout: float = 0.1
    # Auxiliary MSE of 1 + 4 * sigmoid(logit) against the human mean (paper, section 4.3):
    # anchors the score's level, which ListMLE alone leaves free per list (issue 11).
    # 0.5 is the measured choice (docs/training.md, "Choosing mse_weight").
    mse_weight: float = 0.5
    modality_weight: float = 0.0  # modality classification from a second head
    seed: int = 0
    ndcg_k: int = 5
    # "head": the head alone on cached features of a frozen backbone (a CPU is fine);
    # "lora": LoRA adapters on a VLM's language model plus the head (a GPU machine).
    mode: str = "head"
    vlm_path: str = ""  # mode "lora": a local Hugging Face VLM checkpoint directory
    max_image_side: int = 336  # mode "lora": longest image side the VLM sees (paper: 336)
    gradient_checkpointing: bool = False  # mode "lora": less activation memory, ~30% more compute
    lora_dropout: float = 0.05  # mode "lora": on the adapters' input (paper: r=4, alpha=16, dropout 0.05)

    def __post_init__(self) -> None:
        if self.loss not in ("listmle", "bpo", "bce"):
            raise ValueError(f"loss must be listmle, bpo or bce, not {self.loss!r}")
        if self.epochs < 1 or self.lists_per_step < 1 or not self.lr > 0:
            raise ValueError("epochs and lists_per_step must be >= 1 and lr > 0")
        if self.mode not in ("head", "lora"):
            raise ValueError(f"mode must be head or lora, not {self.mode!r}")
        if not isinstance(self.vlm_path, str):
            raise ValueError(f"vlm_path must be a directory path, not {self.vlm_path!r}")
        if self.mode == "lora" and not self.vlm_path:
            raise ValueError("mode lora needs vlm_path: a local Hugging Face VLM checkpoint directory")
        if self.mode == "head" and self.vlm_path:
            raise ValueError("vlm_path is used only in mode lora; head mode trains on the cached backbone features")
        if isinstance(self.max_image_side, bool) or not isinstance(self.max_image_side, int) or self.max_image_side < 1:
            raise ValueError(f"max_image_side must be a whole number >= 1, not {self.max_image_side!r}")
        for name in ("mse_weight", "modality_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a number >= 0, not {value!r}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), not {self.lora_dropout!r}")

    def loss_weights(self) -> losses.LossWeights:
        return losses.LossWeights(
            listmle=1.0 if self.loss == "listmle" else 0.0,
            bpo=1.0 if self.loss == "bpo" else 0.0,
            bce=1.0 if self.loss == "bce" else 0.0,
            mse=self.mse_weight,
            modality=self.modality_weight,
        )


def config_dict(config: TrainConfig) -> dict:
    return asdict(config)


# --- model --------------------------------------------------------------------------------
class RankingModel(nn.Module):
    """The deployable ScoreHead plus a training-only modality head on the same features."""

    def __init__(self, in_dim: int, config: TrainConfig) -> None:
        super().__init__()
        self.head = ScoreHead(in_dim=in_dim, hidden=config.hidden, dropout=config.dropout)
        self.modality = nn.Linear(in_dim, len(MODALITIES))


def lists_loss(model: RankingModel, weights, feats, targets, modality, mask, generator) -> tuple[torch.Tensor, dict]:
    """The configured losses of one padded batch of lists."""
    logits = model.head.logits(feats)
    return losses.combined_loss(
        weights,
        logits,
        targets,
        mask,
        calibrated=1 + 4 * torch.sigmoid(logits) if weights.mse else None,
        modality_logits=model.modality(feats) if weights.modality else None,
        modality_targets=modality if weights.modality else None,
        generator=generator,
    )


# --- evaluation ---------------------------------------------------------------------------
@torch.no_grad()
def predict(head: ScoreHead, features: torch.Tensor, batch: int = 65536) -> np.ndarray:
    head.eval()
    out = [head(features[i : i + batch]) for i in range(0, len(features), batch)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def evaluate_scores(pred: np.ndarray, data: ListData, k: int = 5) -> dict[str, float]:
    """The paper's metrics, per image list, plus MAE, ECE and the grounding-check share
    (MORALE_DISAGREEMENT_THRESHOLD, against the lists' judgments) of 1-5 scores [N] of ``data``'s items."""
    return metrics.evaluate_lists(
        [(true, pred[idx]) for true, idx in data.lists()],
        k=k,
        grounding_threshold=settings.MORALE_DISAGREEMENT_THRESHOLD,
        judgments=data.list_judgments(),
    )


@torch.no_grad()
def evaluate(head: ScoreHead, data: ListData, k: int = 5) -> dict[str, float]:
    """``evaluate_scores`` of the head's 1-5 scores."""
    return evaluate_scores(predict(head, data.features), data, k=k)


def cpu_head(head: ScoreHead) -> ScoreHead:
    """An fp32 CPU copy in eval mode, for evaluation and saving (the original may live on a GPU)."""
    return copy.deepcopy(head).float().cpu().eval()


# --- what the modes do differently ----------------------------------------------------------
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # features, targets, modality, mask


class ListEncoder(Protocol):
    """How lists of scenarios become features: the one thing the two modes do differently."""

    n_lists: int  # training lists
    initial_lists: int  # training lists the loss at initialisation is measured on
    fused_optimiser: bool | None  # AdamW's ``fused`` (None: torch's default)
    not_finite: str  # what a non-finite loss at initialisation means

    def check(self, loss: str) -> None:
        """TrainingDataError for lists that cannot train; runs before anything loads."""

    def load(self) -> tuple[int, torch.device]:
        """Load what encoding needs, after seeding; returns (feature width, device)."""

    def trainable(self) -> list[nn.Parameter]:
        """The parameters that train besides the head's."""

    def train(self, mode: bool) -> None:
        """Switch the encoder's own modules between training and evaluation."""

    def encode(self, rows: torch.Tensor) -> Batch:
        """The padded batch [B, L, ...] of the training lists ``rows``, with gradients, on the device."""

    def eval_features(self, split: str) -> ListData:
        """The ``split`` ("train" or "test") lists with features [N, D] (fp32, CPU) as the
        serving scorer computes them: eval mode, no gradients."""


class CachedFeatures:
    """Mode head: features are rows of the frozen backbone's cached features; only the head trains."""

    # fused: one kernel for all parameters; at one small list per step the optimiser
    # step, not the head, is most of the time (about 8x faster than the default on a CPU).
    fused_optimiser = True
    not_finite = "the head's outputs are not finite"

    def __init__(self, train: ListData, test: ListData) -> None:
        self.lists = {"train": train, "test": test}
        self.n_lists = self.initial_lists = train.n_lists

    def check(self, loss: str) -> None:
        check_lists(loss, self.lists["train"], self.lists["test"])

    def load(self) -> tuple[int, torch.device]:
        self.index = self.lists["train"].padded_index()
        self.bounds = self.lists["train"].offsets.tolist()
        self.one = torch.ones(1, int(self.index.shape[1]) if self.index.numel() else 0, dtype=torch.bool)
        return self.lists["train"].features.shape[1], torch.device("cpu")

    def trainable(self) -> list[nn.Parameter]:
        return []

    def train(self, mode: bool) -> None:
        pass

    def encode(self, rows: torch.Tensor) -> Batch:
        if len(rows) == 1:
            # The paper's setting (one list per step, ~46,000 steps on MM-SCALE): views of the
            # list's rows, no padding, no gather; the same values as ``batch``.
            train, row = self.lists["train"], int(rows[0])
            a, b = self.bounds[row], self.bounds[row + 1]
            return train.features[None, a:b], train.targets[None, a:b], train.modality[None, a:b], self.one[:, : b - a]
        return self.lists["train"].batch(rows, self.index)

    def eval_features(self, split: str) -> ListData:
        return self.lists[split]


# --- the loop -----------------------------------------------------------------------------
def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns the generator for list order and ListMLE ties."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class TrainResult:
    head: ScoreHead  # calibrated, fp32, CPU, eval mode: what is deployed
    config: TrainConfig
    history: list[dict]  # one row per epoch: train loss, test metrics, seconds
    test_metrics: dict[str, float]
    calibration: dict
    initial_loss: float
    test_data: ListData | None = None  # the test lists with the trained model's features
    raw_head: ScoreHead | None = None  # the same head before calibration
    raw_test_metrics: dict[str, float] | None = None  # its test metrics (ranking ones equal test_metrics')


def fit(
    config: TrainConfig,
    encoder: ListEncoder,
    *,
    on_epoch: Callable[[dict], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train the head (and what ``encoder`` trains), calibrate it and evaluate it.

    Raises TrainingDataError for unusable data or a non-finite loss.
    """
    encoder.check(config.loss)
    generator = seed_everything(config.seed)
    in_dim, device = encoder.load()  # LoRA's adapters draw their initial values here
    model = RankingModel(in_dim, config).to(device)  # fp32 on either device
    optimiser = torch.optim.AdamW(
        [*encoder.trainable(), *model.parameters()],
        lr=config.lr,
        weight_decay=config.weight_decay,
        fused=encoder.fused_optimiser,
    )
    weights = config.loss_weights()
    n_lists = encoder.n_lists
    steps_per_epoch = math.ceil(n_lists / config.lists_per_step)

    def step_loss(rows: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return lists_loss(model, weights, *encoder.encode(rows), generator)

    # Sanity: the loss at initialisation (ListMLE: about log(n!)).
    encoder.train(False)
    model.eval()
    with torch.no_grad():
        initial_loss = float(step_loss(torch.arange(min(n_lists, encoder.initial_lists)))[0])
    if not math.isfinite(initial_loss):
        raise TrainingDataError(f"the loss at initialisation is {initial_loss}: {encoder.not_finite}")

    history = []
    test = None
    for epoch in range(1, config.epochs + 1):
        encoder.train(True)
        model.train()
        started = time.perf_counter()
        order = torch.randperm(n_lists, generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            loss, _ = step_loss(order[step * config.lists_per_step : (step + 1) * config.lists_per_step])
            value = float(loss.detach())
            if not math.isfinite(value):  # stop at once: a GPU epoch is long
                raise TrainingDataError(f"training diverged at epoch {epoch}, step {step + 1} (loss {value})")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += value
            if progress is not None:
                progress((epoch - 1) * steps_per_epoch + step + 1, config.epochs * steps_per_epoch)
        seconds = round(time.perf_counter() - started, 3)  # training only, not the evaluation
        test = encoder.eval_features("test")
        row = {
            "epoch": epoch,
            "train_loss": total / steps_per_epoch,
            "seconds": seconds,
            "test": evaluate(cpu_head(model.head), test, k=config.ndcg_k),
        }
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)

    # Calibration: fitted once, on the trained model's features of the training lists.
    encoder.train(False)
    model.eval()
    train = encoder.eval_features("train")
    raw_head = cpu_head(model.head)
    head = cpu_head(model.head)
    # Raises CalibrationError (a TrainingDataError) when the fit fails or is flat, or (without
    # the auxiliary MSE) would change an order within a list: the run fails, nothing is deployed.
    calibration = calibrate(head, train, [test], required=config.mse_weight == 0)
    return TrainResult(
        head=head,
        config=config,
        history=history,
        test_metrics=evaluate(head, test, k=config.ndcg_k),
        calibration=calibration,
        initial_loss=initial_loss,
        test_data=test,
        raw_head=raw_head,
        raw_test_metrics=evaluate(raw_head, test, k=config.ndcg_k),
    )


def train_head(
    config: TrainConfig,
    train: ListData,
    test: ListData,
    *,
    on_epoch: Callable[[dict], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Mode head: train, calibrate and evaluate a head on cached features. Raises
    TrainingDataError for unusable data."""
    if config.mode != "head":
        raise ValueError(f"train_head trains mode head; mode {config.mode!r} is train_lora's")
    return fit(config, CachedFeatures(train, test), on_epoch=on_epoch, progress=progress)
