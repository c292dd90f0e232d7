"""Mode lora: a Hugging Face VLM with LoRA adapters on its language model in the training
loop, feeding the head the last prompt token's hidden state (what ``HFVLMHeadScorer`` serves).

``LoraVLM`` is this mode's ``ListEncoder`` for ``training.train.fit``; the loop itself is
shared with mode head. For GPU machines; the tests run it on a tiny model on a CPU. Spec:
docs/training.md ("Mode lora").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

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

from .lists import ImageList, ListData, TrainingDataError, as_list_data, check_lists
from .train import Batch, TrainConfig, TrainResult, fit

# The loss at initialisation is measured on up to this many training lists (one VLM forward each).
INITIAL_LISTS = 64


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


class LoraVLM:
    """Mode lora's ListEncoder: one VLM forward per list (a list's scenarios share its image
    and form one batch), under bf16 autocast on a GPU; the adapters train with the head."""

    fused_optimiser = None  # torch's default: the step is the VLM's forward, not the optimiser
    initial_lists = INITIAL_LISTS
    not_finite = "the VLM's outputs are not finite (a corrupt checkpoint?)"

    def __init__(self, config: TrainConfig, train: Sequence[ImageList], test: Sequence[ImageList]) -> None:
        self.config = config
        self.lists = {"train": list(train), "test": list(test)}
        self.n_lists = len(train)

    def check(self, loss: str) -> None:
        check_lists(loss, as_list_data(self.lists["train"]), as_list_data(self.lists["test"]))
        check_images([*self.lists["train"], *self.lists["test"]], self.config.max_image_side)

    def load(self) -> tuple[int, torch.device]:
        config = self.config
        # The weights in the dtype the scorer will load them in: bf16 on a GPU, fp32 on a CPU.
        self.device, self.dtype = resolve_device_dtype("auto", "auto")
        self.processor, backbone = load_vlm(config.vlm_path, device=self.device, dtype=self.dtype)
        if config.gradient_checkpointing:  # non-reentrant: frozen inputs need no requires_grad hook
            if hasattr(backbone, "activation_checkpointing_enable"):  # transformers >= 5 (the old name warns)
                backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model = apply_lora(backbone, dropout=config.lora_dropout)  # freezes every base weight; seeded init
        return _hidden_size(backbone), self.device

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def train(self, mode: bool) -> None:
        self.model.train(mode)

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def encode(self, rows: torch.Tensor) -> Batch:
        chosen = [self.lists["train"][i] for i in rows.tolist()]
        hidden = []
        for lst in chosen:
            batch = _encode_list(self.processor, lst, self.config.max_image_side).to(device=self.device, dtype=self.dtype)
            with self._autocast():
                hidden.append(last_token_outputs(self.model, batch)[0])
        data = as_list_data(chosen, torch.cat(hidden).float())  # the head and the loss in fp32
        feats, targets, modality, mask = data.batch(torch.arange(len(chosen)))
        return feats, targets.to(self.device), modality.to(self.device), mask.to(self.device)

    def eval_features(self, split: str) -> ListData:
        lists = self.lists[split]
        features = vlm_features(
            self.model, self.processor, lists, device=self.device, dtype=self.dtype,
            max_image_side=self.config.max_image_side,
        )
        data = as_list_data(lists, features)
        data.check(split)  # NaN features: a broken checkpoint or a diverged adapter
        return data


@dataclass
class LoraTrainResult(TrainResult):
    """TrainResult plus what the caller saves and checks."""

    model: nn.Module | None = None  # the peft model (frozen base + trained adapters): save_lora(model, dir)
    processor: object = None
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
    encoder = LoraVLM(config, train, test)
    result = fit(config, encoder, on_epoch=on_epoch, progress=progress)
    return LoraTrainResult(
        **{f.name: getattr(result, f.name) for f in fields(TrainResult)},
        model=encoder.model.eval(),
        processor=encoder.processor,
        device=encoder.device,
        dtype=encoder.dtype,
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
