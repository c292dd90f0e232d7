"""The training loops, top to bottom: config, data, model, loop, calibration, checkpoint.

Two modes (``TrainConfig.mode``), one list of scenarios per image context at a time
(paper, section 4.2 and appendix 13: AdamW, lr 1e-4, 5 epochs, one list per step):

- ``"head"`` (``train_head``): the small MLP head (``modelloop.scoring.offline.ScoreHead``)
  on features of a frozen backbone, read from the feature cache. Runs well on a CPU.
- ``"lora"`` (``train_lora``, the last section): a Hugging Face VLM with LoRA adapters on
  its language model in the loop, plus the same head on the last prompt token's hidden
  state (what ``HFVLMHeadScorer`` serves). For GPU machines.

Both share the losses, the evaluation and the calibration. This file knows nothing about
the database: ``training.services`` turns a dataset export into ``ListData`` (features)
or ``ImageList``s (images and texts) and stores what the loops return.

ListMLE fixes the order of the scores but not their scale, and annotators are shown a
1-5 score whose distance from theirs triggers grounding checks. So after training, a
logistic calibration ``1 + 4 * sigmoid(a + b * logit)`` is fitted on the training lists
and folded into the head's last layer: the saved head outputs calibrated 1-5 scores
directly, and the mapping is strictly increasing, so it changes no ranking metric.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from modelloop.scoring.features import ImageLoadError
from modelloop.scoring.hf_vlm import (
    apply_lora,
    chat_prompt,
    encode_pairs,
    last_token_outputs,
    load_pil_image,
    load_vlm,
    resolve_device_dtype,
)
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


def lists_loss(model: RankingModel, weights, feats, targets, modality, mask, generator) -> tuple[torch.Tensor, dict]:
    """The configured losses of one padded batch of lists (both training modes use this)."""
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
def check_lists(config: TrainConfig, train: ListData, test: ListData) -> None:
    """TrainingDataError unless the lists can train a ranking (both modes)."""
    train.check("train")
    test.check("test")
    if int((train.offsets[1:] - train.offsets[:-1]).max()) < 2 and config.loss in ("listmle", "bpo"):
        raise TrainingDataError("every training list has a single scenario: a ranking loss has nothing to learn")
    if bool((train.targets == train.targets[0]).all()):
        raise TrainingDataError(f"the training scores are all equal ({float(train.targets[0])}): nothing to rank")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns the generator for list order and ListMLE ties."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


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
    if config.mode != "head":
        raise ValueError(f"train_head trains mode head; mode {config.mode!r} is train_lora's")
    check_lists(config, train, test)
    generator = seed_everything(config.seed)

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
        return lists_loss(model, weights, feats, targets, modality, mask, generator)

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


# =========================================================================================
# Mode "lora": the VLM backbone in the loop, with LoRA adapters on its language model.
#
# The model is what HFVLMHeadScorer serves: the VLM reads the image and the chat-template
# prompt of each (setting, scenario); the final hidden state of the prompt's last token
# goes through the fp32 ScoreHead. Only the LoRA adapters (r=4, alpha=16, dropout 0.05 on
# the language model's q/k/v/o, ``modelloop.scoring.hf_vlm.apply_lora``) and the head
# train; the vision tower and every base weight stay frozen. On a GPU the base weights
# are bf16 (as the scorer loads them) and the training forward runs under bf16 autocast;
# on a CPU everything is fp32. Evaluation, calibration and the reload check run like the
# scorer: eval mode, no autocast. A step runs one forward per list (a list's scenarios
# share its image and form one batch); with lists_per_step > 1 the activations of all
# its lists are kept until the backward pass (gradient_checkpointing shrinks them).
# =========================================================================================
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
        offsets=torch.tensor(np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]), dtype=torch.long),
        scenario_ids=[sid for lst in lists for sid in lst.scenario_ids],
    )


def check_images(lists: Sequence[ImageList], max_image_side: int) -> None:
    """Decode every context image once before training; TrainingDataError naming the bad ones."""
    problems = []
    for lst in lists:
        try:
            load_pil_image(lst.image_path, max_image_side)
        except ImageLoadError as exc:
            problems.append(f"context #{lst.context_id}: {exc}")
    if problems:
        raise TrainingDataError(f"{len(problems)} context image(s) cannot be used: " + "; ".join(problems[:5]))


def encode_triples(processor, triples: Sequence[tuple[str, str, str]], max_image_side: int):
    """Processor batch (CPU) of (image path, setting, text) triples, built as HFVLMBackbone builds it."""
    images: dict[str, object] = {}
    for path, _, _ in triples:
        if path not in images:
            images[path] = load_pil_image(path, max_image_side)
    prompts = [chat_prompt(processor, setting, text) for _, setting, text in triples]
    return encode_pairs(processor, [images[path] for path, _, _ in triples], prompts)


def _encode_list(processor, lst: ImageList, max_image_side: int):
    try:
        return encode_triples(processor, [(lst.image_path, lst.setting, text) for text in lst.texts], max_image_side)
    except ImageLoadError as exc:
        raise TrainingDataError(f"context #{lst.context_id}: {exc}") from None
    except Exception as exc:  # processors reject odd images (extreme aspect ratios, ...) with many types
        raise TrainingDataError(
            f"the VLM processor rejected context #{lst.context_id} ({lst.image_path}): {type(exc).__name__}: {exc}"
        ) from exc


def _hidden_size(model: nn.Module) -> int:
    return model.config.get_text_config().hidden_size


@torch.no_grad()
def vlm_features(
    model: nn.Module, processor, lists: Sequence[ImageList], *, device, dtype, max_image_side: int
) -> torch.Tensor:
    """Last-token features [N, hidden] (fp32, CPU) of every scenario, one forward per list,
    in eval mode without autocast: what the serving scorer computes."""
    model.eval()
    out = []
    for lst in lists:
        batch = _encode_list(processor, lst, max_image_side).to(device=device, dtype=dtype)
        hidden, _ = last_token_outputs(model, batch)
        out.append(hidden.float().cpu())
    return torch.cat(out) if out else torch.zeros(0, _hidden_size(model))


def _cpu_head(head: ScoreHead) -> ScoreHead:
    """An fp32 CPU copy in eval mode, for evaluation and saving (the original may live on a GPU)."""
    return copy.deepcopy(head).float().cpu().eval()


@dataclass
class LoraTrainResult(TrainResult):
    """TrainResult (``head`` is a calibrated fp32 CPU copy) plus what the caller saves and checks."""

    model: nn.Module | None = None  # the peft model (frozen base + trained adapters): save_lora(model, dir)
    processor: object = None
    test_data: ListData | None = None  # the test lists with the trained model's features
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32


def train_lora(
    config: TrainConfig,
    train: Sequence[ImageList],
    test: Sequence[ImageList],
    *,
    on_epoch: Callable[[dict], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LoraTrainResult:
    """Train LoRA adapters and the head through the VLM, calibrate and evaluate.

    Raises TrainingDataError for unusable data (as ``train_head``, plus unreadable
    images and a non-finite loss) and ScoringError for a checkpoint that does not load.
    """
    if config.mode != "lora":
        raise ValueError(f"train_lora trains mode lora, not {config.mode!r}")
    check_lists(config, as_list_data(train), as_list_data(test))
    check_images([*train, *test], config.max_image_side)
    generator = seed_everything(config.seed)

    # The weights in the dtype the scorer will load them in: bf16 on a GPU, fp32 on a CPU.
    device, dtype = resolve_device_dtype("auto", "auto")
    processor, backbone = load_vlm(config.vlm_path, device=device, dtype=dtype)
    if config.gradient_checkpointing:  # non-reentrant: frozen inputs need no requires_grad hook
        if hasattr(backbone, "activation_checkpointing_enable"):  # transformers >= 5 (the old name warns)
            backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_model = apply_lora(backbone, dropout=config.lora_dropout)  # freezes every base weight; seeded init
    model = RankingModel(_hidden_size(backbone), config).to(device)  # fp32 on either device
    adapters = [p for p in peft_model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW([*adapters, *model.parameters()], lr=config.lr, weight_decay=config.weight_decay)
    weights = config.loss_weights()
    n_lists = len(train)
    steps_per_epoch = math.ceil(n_lists / config.lists_per_step)

    def autocast():
        if device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step_loss(rows: list[int]) -> tuple[torch.Tensor, dict]:
        chosen = [train[i] for i in rows]
        hidden = []
        for lst in chosen:
            batch = _encode_list(processor, lst, config.max_image_side).to(device=device, dtype=dtype)
            with autocast():
                hidden.append(last_token_outputs(peft_model, batch)[0])
        data = as_list_data(chosen, torch.cat(hidden).float())  # the head and the loss in fp32
        feats, targets, modality, mask = _batch(data, data.padded_index(), torch.arange(len(chosen)))
        targets, modality, mask = targets.to(device), modality.to(device), mask.to(device)
        return lists_loss(model, weights, feats, targets, modality, mask, generator)

    def test_now() -> tuple[ListData, dict]:
        features = vlm_features(
            peft_model, processor, test, device=device, dtype=dtype, max_image_side=config.max_image_side
        )
        data = as_list_data(test, features)
        data.check("test")  # NaN features: a broken checkpoint or a diverged adapter
        return data, evaluate(_cpu_head(model.head), data, k=config.ndcg_k)

    # Sanity: the loss at initialisation (ListMLE: about log(n!)) on up to 64 training lists.
    peft_model.eval()
    model.eval()
    with torch.no_grad():
        initial_loss = float(step_loss(list(range(min(n_lists, 64))))[0])
    if not math.isfinite(initial_loss):
        raise TrainingDataError(
            f"the loss at initialisation is {initial_loss}: the VLM's outputs are not finite (a corrupt checkpoint?)"
        )

    history = []
    test_data = None
    for epoch in range(1, config.epochs + 1):
        peft_model.train()
        model.train()
        started = time.perf_counter()
        order = torch.randperm(n_lists, generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            rows = order[step * config.lists_per_step : (step + 1) * config.lists_per_step].tolist()
            loss, _ = step_loss(rows)
            if not torch.isfinite(loss):  # stop at once: a GPU epoch is long
                raise TrainingDataError(f"training diverged at epoch {epoch}, step {step + 1} (loss {float(loss)})")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
            if progress is not None:
                progress((epoch - 1) * steps_per_epoch + step + 1, config.epochs * steps_per_epoch)
        seconds = round(time.perf_counter() - started, 3)  # training only, as in train_head
        test_data, test_metrics = test_now()
        row = {"epoch": epoch, "train_loss": total / steps_per_epoch, "seconds": seconds, "test": test_metrics}
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)

    # Calibration on the trained model's features of the training lists, folded into the head.
    train_features = vlm_features(
        peft_model, processor, train, device=device, dtype=dtype, max_image_side=config.max_image_side
    )
    as_list_data(train, train_features).check("train")
    head = _cpu_head(model.head)
    with torch.no_grad():
        train_logits = head.logits(train_features)
    a, b = fit_logistic_calibration(train_logits, torch.tensor([t for lst in train for t in lst.targets]))
    fold_calibration(head, a, b)
    calibration = {
        "method": "builtin",
        "fitted": "1 + 4 * sigmoid(a + b * logit) on the training lists, folded into the head",
        "a": a,
        "b": b,
    }
    return LoraTrainResult(
        head=head,
        config=config,
        history=history,
        test_metrics=evaluate(head, test_data, k=config.ndcg_k),
        calibration=calibration,
        initial_loss=initial_loss,
        model=peft_model.eval(),
        processor=processor,
        test_data=test_data,
        device=device,
        dtype=dtype,
    )


@torch.no_grad()
def lora_scores(result: LoraTrainResult, triples: Sequence[tuple[str, str, str]]) -> torch.Tensor:
    """1-5 scores [n] of (image path, setting, text) triples by the trained model in memory, in
    one batch, computed as HFVLMHeadScorer computes them (for the check that what was saved
    reloads to the same scores)."""
    result.model.eval()
    batch = encode_triples(result.processor, triples, result.config.max_image_side)
    hidden, _ = last_token_outputs(result.model, batch.to(device=result.device, dtype=result.dtype))
    return result.head(hidden.float().cpu())
