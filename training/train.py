"""The head-training loop, top to bottom: config, data, model, loop, calibration, checkpoint.

It trains the small MLP head (``modelloop.scoring.offline.ScoreHead``) on features of a
frozen backbone, one list of scenarios per image context at a time (paper, section 4.2
and appendix 13: AdamW, lr 1e-4, 5 epochs, one list per step). It knows nothing about
the database: ``training.services`` turns a dataset export into ``ListData`` (features
from the feature cache) and stores what this returns.

ListMLE fixes the order of the scores but not their scale, and annotators are shown a
1-5 score whose distance from theirs triggers grounding checks. So after training, a
logistic calibration ``1 + 4 * sigmoid(a + b * logit)`` is fitted on the training lists
and folded into the head's last layer: the saved head outputs calibrated 1-5 scores
directly, and the mapping is strictly increasing, so it changes no ranking metric.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from modelloop.scoring.offline import ScoreHead

from . import losses, metrics

MODALITIES = ("text", "image", "both")


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
    mse_weight: float = 0.0  # auxiliary MSE on the 1-5 scale
    modality_weight: float = 0.0  # modality classification from a second head
    seed: int = 0
    ndcg_k: int = 5

    def __post_init__(self) -> None:
        if self.loss not in ("listmle", "bpo", "bce"):
            raise ValueError(f"loss must be listmle, bpo or bce, not {self.loss!r}")
        if self.epochs < 1 or self.lists_per_step < 1 or not self.lr > 0:
            raise ValueError("epochs and lists_per_step must be >= 1 and lr > 0")

    def loss_weights(self) -> losses.LossWeights:
        return losses.LossWeights(
            listmle=1.0 if self.loss == "listmle" else 0.0,
            bpo=1.0 if self.loss == "bpo" else 0.0,
            bce=1.0 if self.loss == "bce" else 0.0,
            mse=self.mse_weight,
            modality=self.modality_weight,
        )


# --- data ---------------------------------------------------------------------------------
class TrainingDataError(ValueError):
    """The data cannot train a head (empty, all lists too short, NaN features, ...)."""


@dataclass
class ListData:
    """Scenario lists, one per image context, as flat item arrays plus list boundaries.

    features  float32 [N, D]   backbone features of every scenario
    targets   float32 [N]      mean human score, 1-5
    modality  int64   [N]      majority modality 0 text / 1 image / 2 both, -100 if none
    offsets   int64   [n + 1]  list i holds items offsets[i]:offsets[i+1]
    """

    features: torch.Tensor
    targets: torch.Tensor
    modality: torch.Tensor
    offsets: torch.Tensor
    scenario_ids: list[int] = field(default_factory=list)

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


def _batch(data: ListData, index: torch.Tensor, rows: torch.Tensor):
    """Padded tensors [B, L, ...] for the lists in `rows` of the padded index."""
    item = index[rows]
    mask = item >= 0
    safe = item.clamp(min=0)
    return data.features[safe], data.targets[safe], data.modality[safe], mask


# --- model --------------------------------------------------------------------------------
class RankingModel(nn.Module):
    """The deployable ScoreHead plus a training-only modality head on the same features."""

    def __init__(self, in_dim: int, config: TrainConfig) -> None:
        super().__init__()
        self.head = ScoreHead(in_dim=in_dim, hidden=config.hidden, dropout=config.dropout)
        self.modality = nn.Linear(in_dim, len(MODALITIES))


# --- evaluation ---------------------------------------------------------------------------
@torch.no_grad()
def predict(head: ScoreHead, features: torch.Tensor, batch: int = 65536) -> np.ndarray:
    head.eval()
    out = [head(features[i : i + batch]) for i in range(0, len(features), batch)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


@torch.no_grad()
def evaluate(head: ScoreHead, data: ListData, k: int = 5) -> dict[str, float]:
    """The paper's metrics, per image list, on the head's 1-5 scores."""
    pred = predict(head, data.features)
    return metrics.evaluate_lists([(true, pred[idx]) for true, idx in data.lists()], k=k)


# --- calibration --------------------------------------------------------------------------
def fit_logistic_calibration(logits: torch.Tensor, targets: torch.Tensor, steps: int = 200) -> tuple[float, float]:
    """(a, b) minimising the MSE of 1 + 4 * sigmoid(a + b * logit) against the targets, b > 0."""
    z = (logits - logits.mean()) / logits.std().clamp(min=1e-6)  # standardise for a well-posed fit
    a = torch.zeros((), requires_grad=True)
    log_b = torch.zeros((), requires_grad=True)
    optimiser = torch.optim.LBFGS([a, log_b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = ((1 + 4 * torch.sigmoid(a + log_b.exp() * z) - targets) ** 2).mean()
        loss.backward()
        return loss

    optimiser.step(closure)
    a, b_z = float(a.detach()), float(log_b.detach().exp())
    # Undo the standardisation: a + b_z * (logit - mean) / std
    std = float(logits.std().clamp(min=1e-6))
    return a - b_z * float(logits.mean()) / std, b_z / std


def fold_calibration(head: ScoreHead, a: float, b: float) -> None:
    """Make head(x) = 1 + 4 * sigmoid(a + b * old_logit(x)) by rescaling its last layer."""
    last = head.net[-1]
    with torch.no_grad():
        last.weight.mul_(b)
        last.bias.mul_(b).add_(a)


# --- the loop -----------------------------------------------------------------------------
@dataclass
class TrainResult:
    head: ScoreHead
    config: TrainConfig
    history: list[dict]  # one row per epoch: train loss, test metrics, seconds
    test_metrics: dict[str, float]
    calibration: dict
    initial_loss: float


def train_head(
    config: TrainConfig,
    train: ListData,
    test: ListData,
    *,
    on_epoch: Callable[[dict], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train, calibrate and evaluate a head. Raises TrainingDataError for unusable data."""
    train.check("train")
    test.check("test")
    if int((train.offsets[1:] - train.offsets[:-1]).max()) < 2 and config.loss in ("listmle", "bpo"):
        raise TrainingDataError("every training list has a single scenario: a ranking loss has nothing to learn")
    if bool((train.targets == train.targets[0]).all()):
        raise TrainingDataError(f"the training scores are all equal ({float(train.targets[0])}): nothing to rank")

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    model = RankingModel(train.features.shape[1], config)
    # fused: one kernel for all parameters; at one small list per step the optimiser
    # step, not the head, is most of the time (about 8x faster than the default on a CPU).
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    weights = config.loss_weights()
    index = train.padded_index()
    n_lists = train.n_lists
    steps_per_epoch = math.ceil(n_lists / config.lists_per_step)

    def step_loss(rows: torch.Tensor) -> tuple[torch.Tensor, dict]:
        feats, targets, modality, mask = _batch(train, index, rows)
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

    with torch.no_grad():  # sanity: the loss at initialisation (ListMLE: about log(n!))
        model.eval()
        initial_loss = float(step_loss(torch.arange(n_lists))[0])

    history = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(n_lists, generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            rows = order[step * config.lists_per_step : (step + 1) * config.lists_per_step]
            loss, _ = step_loss(rows)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
            if progress is not None:
                progress((epoch - 1) * steps_per_epoch + step + 1, config.epochs * steps_per_epoch)
        row = {
            "epoch": epoch,
            "train_loss": total / steps_per_epoch,
            "seconds": round(time.perf_counter() - started, 3),
            "test": evaluate(model.head, test, k=config.ndcg_k),
        }
        if not math.isfinite(row["train_loss"]):
            raise TrainingDataError(f"training diverged at epoch {epoch} (loss {row['train_loss']})")
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)

    model.eval()
    with torch.no_grad():
        train_logits = model.head.logits(train.features)
    a, b = fit_logistic_calibration(train_logits, train.targets)
    fold_calibration(model.head, a, b)
    # "builtin" for the scoring service: the head's own output is already calibrated.
    calibration = {
        "method": "builtin",
        "fitted": "1 + 4 * sigmoid(a + b * logit) on the training lists, folded into the head",
        "a": a,
        "b": b,
    }
    return TrainResult(
        head=model.head,
        config=config,
        history=history,
        test_metrics=evaluate(model.head, test, k=config.ndcg_k),
        calibration=calibration,
        initial_loss=initial_loss,
    )


def config_dict(config: TrainConfig) -> dict:
    return asdict(config)
