"""Scorers on a Hugging Face VLM: "hf-vlm-head" (last-token features + a trained head) and
"hf-vlm-zero-shot" (the expected digit of its 1-5 answer). How they read a pair: docs/hf-vlm-scorer.md.

About 500 lines on purpose: checkpoint checks, loading, LoRA, the prompt and the batched
forward stay beside the scorers, because training's LoRA loop imports them from here to
feed the model exactly as the scorers do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Sequence

import torch
from PIL import Image

from . import LORA_ADAPTER_FILES, FeatureScorer, Scorer, ScoringError, ScoringInput, ScoringResult, scoring_results
from .batching import OUT_OF_MEMORY, halve_on_oom
from .features import ImageLoadError, open_rgb_image
from .offline import _config_int, load_head

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import BatchFeature, PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin

__all__ = [
    "HFVLMBackbone",
    "HFVLMHeadScorer",
    "HFVLMZeroShotScorer",
    "apply_lora",
    "chat_prompt",
    "check_model_dir",
    "encode_pairs",
    "digit_token_ids",
    "last_token_index",
    "last_token_outputs",
    "load_pil_image",
    "load_vlm",
    "lora_target_regex",
    "resize_to_fit",
    "resolve_device_dtype",
    "save_lora",
    "scenario_prompt",
]

# Bump whenever scenario_prompt's wording changes: it is part of backbone_ref.
PROMPT_VERSION = 1
RATING_DIGITS = ("1", "2", "3", "4", "5")
LORA_R = 4
LORA_ALPHA = 16
LORA_DROPOUT = 0.05
LORA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
_PREPROCESSING_FILES = (
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def scenario_prompt(setting: str, text: str) -> str:
    """The question the VLM reads next to the image, for features and zero-shot alike.

    One wording for both, so the head reads the state the model is in just before it
    would answer the rating question.
    """
    return (
        f"Setting shown in the image: {setting}\n"
        f"Action: {text}\n"
        "How morally acceptable is this action in the situation shown in the image? "
        "Rate it from 1 (completely unacceptable) to 5 (completely acceptable). Answer with one digit."
    )


# --- images -------------------------------------------------------------------------------
def resize_to_fit(image: Image.Image, max_side: int) -> Image.Image:
    """Shrink ``image`` so its longest side is at most ``max_side``, keeping the aspect ratio.

    Smaller images are returned unchanged: the processor upsamples them as it needs to.
    """
    width, height = image.size
    if max(width, height) <= max_side:
        return image
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def load_pil_image(path: str, max_side: int) -> Image.Image:
    """Decode, orient and shrink one image to RGB; ImageLoadError (a readable reason) if unusable."""
    return resize_to_fit(open_rgb_image(path, draft_side=max_side), max_side)


# --- loading ------------------------------------------------------------------------------
def resolve_device_dtype(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """bf16 on a GPU, fp32 on a CPU, unless the config says otherwise."""
    if device not in ("auto", "cpu", "cuda"):
        raise ScoringError(f"config 'device' must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if dtype not in ("auto", "float32", "bfloat16"):
        raise ScoringError(f"config 'dtype' must be 'auto', 'float32' or 'bfloat16', got {dtype!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ScoringError("config asks for device 'cuda' but no CUDA GPU is available")
    resolved = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    if dtype == "auto":
        return resolved, torch.bfloat16 if resolved.type == "cuda" else torch.float32
    return resolved, getattr(torch, dtype)


def check_model_dir(path: str | os.PathLike[str]) -> Path:
    """The checkpoint directory, resolved, or ScoringError saying what is missing or broken."""
    directory = Path(path).expanduser()
    if not directory.exists():
        raise ScoringError(f"VLM backbone directory not found: {directory}")
    if not directory.is_dir():
        raise ScoringError(f"VLM backbone path is not a directory: {directory}")
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ScoringError(
            f"no config.json in VLM backbone directory {directory} "
            "(expected a checkpoint written by transformers' save_pretrained)"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScoringError(f"config.json in VLM backbone directory {directory} is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or not config.get("model_type"):
        raise ScoringError(f"config.json in VLM backbone directory {directory} has no 'model_type'")
    if not _weight_files(directory):
        raise ScoringError(f"no weight files (*.safetensors or *.bin) in VLM backbone directory {directory}")
    return directory.resolve()


def _weight_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))


def _sample_bytes(path: Path, blocks: int = 16, block_size: int = 64 * 1024) -> bytes:
    """``blocks`` evenly spaced blocks of the file (all of it when small), for fingerprinting."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= blocks * block_size:
            return handle.read()
        chunks = []
        for index in range(blocks):
            handle.seek(index * (size - block_size) // (blocks - 1))
            chunks.append(handle.read(block_size))
    return b"".join(chunks)


def load_vlm(
    path: str | os.PathLike[str], *, device: torch.device, dtype: torch.dtype
) -> tuple[ProcessorMixin, PreTrainedModel]:
    """A fresh (processor, model) pair from a local checkpoint, the model in eval mode.

    Not cached: training loops call this to get a model they may wrap with LoRA. Scorers
    go through the per-process cache instead.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    directory = check_model_dir(path)
    try:
        processor = AutoProcessor.from_pretrained(directory, local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(
            directory, local_files_only=True, dtype=dtype, device_map=str(device)
        )
    except Exception as exc:  # transformers raises many types for a bad checkpoint
        raise ScoringError(f"cannot load the VLM in {directory}: {type(exc).__name__}: {exc}") from exc
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:  # batches need padding; the attention mask hides it
        tokenizer.pad_token = tokenizer.eos_token
    return processor, model.eval()


@lru_cache(maxsize=2)  # the current model version and the one being promoted
def _cached_vlm(
    directory: Path, device: torch.device, dtype: torch.dtype, adapter: Path | None
) -> tuple[ProcessorMixin, torch.nn.Module]:
    processor, model = load_vlm(directory, device=device, dtype=dtype)
    if adapter is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter)
        except Exception as exc:  # a missing file, or an adapter for another base model
            raise ScoringError(f"cannot load the LoRA adapter in {adapter} onto {directory}: {exc}") from exc
    return processor, model.eval().requires_grad_(False)


# --- LoRA ---------------------------------------------------------------------------------
def lora_target_regex(model: PreTrainedModel) -> str:
    """A peft ``target_modules`` regex for the language model's q/k/v/o projections only.

    Plain names would also hit SigLIP vision towers (Idefics3, LLaVA-OneVision), which
    have q_proj/k_proj/v_proj too, so the regex is anchored at the decoder's own path.
    """
    decoder = model.get_decoder()
    prefix = next((name for name, module in model.named_modules() if module is decoder), None)
    if not prefix:
        raise ValueError(f"cannot locate the language model inside {type(model).__name__}")
    return rf"{re.escape(prefix)}\..*\.(?:{'|'.join(LORA_PROJECTIONS)})"


def apply_lora(model: PreTrainedModel, *, dropout: float = LORA_DROPOUT) -> PeftModel:
    """Wrap ``model`` with trainable LoRA adapters as in the paper (r=4, alpha=16, dropout 0.05).

    Only the adapters train; the base weights are frozen by peft. ``dropout`` (on the
    adapters' input, training only) may be set to 0 for overfitting sanity checks.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=LORA_R,
        lora_alpha=LORA_ALPHA,
        lora_dropout=dropout,
        bias="none",
        target_modules=lora_target_regex(model),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def save_lora(peft_model: PeftModel, directory: str | os.PathLike[str]) -> Path:
    """Write the adapter (config + safetensors weights) for ``lora_adapter_path``."""
    directory = Path(directory)
    peft_model.save_pretrained(directory, safe_serialization=True)
    return directory


def _check_adapter_dir(path: str) -> Path:
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise ScoringError(f"LoRA adapter directory not found: {directory}")
    for name in LORA_ADAPTER_FILES:
        if not (directory / name).is_file():
            raise ScoringError(f"no {name} in LoRA adapter directory {directory}")
    return directory.resolve()


# --- inputs and forward -------------------------------------------------------------------
def chat_prompt(processor: ProcessorMixin, setting: str, text: str) -> str:
    """The full model input as text: the model's own chat template, one image, the question.

    Shared by the scorers and the LoRA training loop, so both feed the model the same input.
    """
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": scenario_prompt(setting, text)}],
        }
    ]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode_pairs(processor: ProcessorMixin, images: Sequence[Image.Image], prompts: Sequence[str]) -> BatchFeature:
    """Processor output for a batch on the CPU, padded on whichever side the tokenizer pads.

    Move it with ``batch.to(device=..., dtype=...)`` (floating tensors only get the dtype).
    """
    return processor(text=list(prompts), images=list(images), padding=True, return_tensors="pt")


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index [b] of each row's last real token, whichever side the padding is on."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return torch.where(attention_mask.bool(), positions, -1).max(dim=1).values


def last_token_outputs(model: torch.nn.Module, batch: BatchFeature) -> tuple[torch.Tensor, torch.Tensor]:
    """Final-layer hidden state [b, hidden] and next-token logits [b, vocab] at each row's last real token.

    Differentiable (no inference mode here), so a LoRA training loop can use it too.
    Logits are computed only at the distinct last positions (one with left padding),
    never over the whole sequence; a 1-D ``logits_to_keep`` means the same in
    transformers 4.x and 5.x.
    """
    last = last_token_index(batch["attention_mask"])
    positions, column = torch.unique(last, return_inverse=True)
    outputs = model(**batch, output_hidden_states=True, use_cache=False, logits_to_keep=positions)
    rows = torch.arange(len(last), device=last.device)
    return outputs.hidden_states[-1][rows, last], outputs.logits[rows, column]


@dataclass(frozen=True)
class _Pending:
    row: int
    image: Image.Image
    prompt: str


class HFVLMBackbone:
    """A loaded VLM plus the preprocessing and batching every HF VLM scorer shares.

    Config keys: backbone_path (required), max_image_side (336), max_text_tokens (512),
    batch_size (8), dtype ("auto"), device ("auto"), lora_adapter_path (optional).
    """

    def __init__(self, config: dict, *, allow_adapter: bool = True) -> None:
        path = config.get("backbone_path")
        if not isinstance(path, str) or not path:
            raise ScoringError("config 'backbone_path' (a local checkpoint directory) is required")
        self.directory = check_model_dir(path)
        self.max_image_side = _config_int(config, "max_image_side", 336)
        self.max_text_tokens = _config_int(config, "max_text_tokens", 512)
        self.batch_size = _config_int(config, "batch_size", 8)
        self.device, self.dtype = resolve_device_dtype(config.get("device", "auto"), config.get("dtype", "auto"))
        adapter = config.get("lora_adapter_path")
        if adapter is not None and not allow_adapter:
            raise ScoringError("config 'lora_adapter_path' is not supported by this scorer")
        if adapter is not None and (not isinstance(adapter, str) or not adapter):
            raise ScoringError(f"config 'lora_adapter_path' must be a directory path, got {adapter!r}")
        self.adapter = _check_adapter_dir(adapter) if adapter else None
        self.backbone_ref = self._backbone_ref()
        self.processor, self.model = _cached_vlm(self.directory, self.device, self.dtype, self.adapter)
        self.tokenizer = self.processor.tokenizer
        self.hidden_size: int = self.model.config.get_text_config().hidden_size

    def _backbone_ref(self) -> str:
        """Names the weights and preprocessing: config and preprocessing files, each weight
        file's name, size and a 1 MiB sample of its bytes (hashing gigabytes at start-up would
        be too slow; retrained weights of the same shapes differ in the sample), image side,
        prompt version, dtype and the adapter's exact bytes."""
        digest = hashlib.sha256()
        digest.update(f"prompt-v{PROMPT_VERSION}|side={self.max_image_side}|{self.dtype}".encode())
        for name in ("config.json", *_PREPROCESSING_FILES):
            if (self.directory / name).is_file():
                digest.update(f"|{name}=".encode() + (self.directory / name).read_bytes())
        for weights in _weight_files(self.directory):
            digest.update(f"|{weights.name}:{weights.stat().st_size}:".encode() + _sample_bytes(weights))
        ref = f"hf:{self.directory.name}"
        if self.adapter is not None:
            for name in LORA_ADAPTER_FILES:
                digest.update(f"|lora/{name}=".encode() + (self.adapter / name).read_bytes())
            ref += f"+lora:{self.adapter.name}"
        return f"{ref}:{digest.hexdigest()[:16]}"

    def chat_text(self, setting: str, text: str) -> str:
        """``chat_prompt`` with this model's processor."""
        return chat_prompt(self.processor, setting, text)

    def encode(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> BatchFeature:
        """``encode_pairs`` with this model's processor."""
        return encode_pairs(self.processor, images, prompts)

    def _forward(self, batch: BatchFeature) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden, logits) of ``last_token_outputs`` as fp32 on the CPU; may raise OutOfMemoryError."""
        with torch.inference_mode():
            hidden, logits = last_token_outputs(self.model, batch.to(device=self.device, dtype=self.dtype))
            return hidden.float().cpu(), logits.float().cpu()

    def features(self, inputs: Sequence[ScoringInput]) -> tuple[torch.Tensor, list[str]]:
        """Pooled fp32 features [n, hidden_size] and one error per input ("" when fine)."""
        return self.run(inputs, self.hidden_size, lambda hidden, logits: hidden)

    def run(
        self,
        inputs: Sequence[ScoringInput],
        width: int,
        readout: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, list[str]]:
        """``readout(hidden, logits)`` [b, width] for every pair, in batches; failed rows are zeros.

        A pair fails alone (with its reason) for an unusable image, an over-long prompt,
        a processor error, or running out of GPU memory even at batch size 1.
        """
        values = torch.zeros(len(inputs), width)
        errors = [""] * len(inputs)
        pending: list[_Pending] = []  # at most one batch of decoded images in memory
        for row, item in enumerate(inputs):
            try:
                image = load_pil_image(item.image_path, self.max_image_side)
            except ImageLoadError as exc:
                errors[row] = str(exc)
                continue
            prompt = self.chat_text(item.setting, item.text)
            n_tokens = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            if n_tokens > self.max_text_tokens:
                errors[row] = (
                    f"text too long: the prompt has {n_tokens} text tokens, more than "
                    f"max_text_tokens={self.max_text_tokens}"
                )
                continue
            pending.append(_Pending(row, image, prompt))
            if len(pending) == self.batch_size:
                self._run_batch(pending, values, errors, readout)
                pending = []
        if pending:
            self._run_batch(pending, values, errors, readout)
        return values, errors

    def _run_batch(
        self,
        chunk: list[_Pending],
        values: torch.Tensor,
        errors: list[str],
        readout: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> None:
        """Fill ``values`` / ``errors`` for one batch, halved on out-of-memory (``halve_on_oom``)."""
        for pending, (value, error) in zip(chunk, self._outputs(chunk, readout)):
            if error:
                errors[pending.row] = error
            else:
                values[pending.row] = value

    def _outputs(
        self, chunk: list[_Pending], readout: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> list[tuple[torch.Tensor | None, str]]:
        """(readout row, "") per pair, or (None, why it failed)."""

        def forward(part: list[_Pending]) -> list[tuple[torch.Tensor | None, str]]:
            try:
                batch = self.encode([p.image for p in part], [p.prompt for p in part])
            except Exception as exc:  # processors reject odd images (extreme aspect ratios, ...) with many types
                if len(part) == 1:
                    return [(None, f"the VLM processor rejected this pair: {type(exc).__name__}: {exc}")]
                # find the culprit: every other pair still scores
                return [output for single in part for output in self._outputs([single], readout)]
            hidden, logits = self._forward(batch)  # OutOfMemoryError: halve_on_oom splits the batch
            return [(row, "") for row in readout(hidden, logits)]

        return halve_on_oom(forward, chunk, lambda pending: (None, OUT_OF_MEMORY))


# --- scorers ------------------------------------------------------------------------------
class HFVLMHeadScorer(FeatureScorer):
    """VLM last-token features (frozen backbone, or backbone + LoRA adapter) scored by a trained ScoreHead."""

    key: ClassVar[str] = "hf-vlm-head"
    description: ClassVar[str] = (
        "A Hugging Face vision-language model (e.g. Qwen2-VL, SmolVLM, LLaVA-OneVision) reads the image "
        "and the scenario; the final hidden state of the prompt's last token is scored 1-5 by a small MLP "
        "head trained on annotator judgments (optionally with a LoRA-tuned backbone)."
    )

    def __init__(self, *, config: dict, head_weights_path: str | None = None) -> None:
        if not head_weights_path:
            raise ScoringError(f"scorer {self.key!r} needs head weights; none were given")
        self.backbone = HFVLMBackbone(config)
        self.backbone_ref = self.backbone.backbone_ref
        self.feature_dim = self.backbone.hidden_size
        self.head = load_head(head_weights_path, config.get("head", {}), in_dim=self.feature_dim)

    def features(self, inputs: Sequence[ScoringInput]) -> tuple[torch.Tensor, list[str]]:
        return self.backbone.features(inputs)

    def head_scores(self, features: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.head(features.float())


class HFVLMZeroShotScorer(Scorer):
    """Untrained VLM rating: the expected digit under the next-token distribution over "1".."5"."""

    key: ClassVar[str] = "hf-vlm-zero-shot"
    description: ClassVar[str] = (
        "Zero-shot Hugging Face vision-language model: the instruct model is asked how morally "
        "acceptable the action is in the image (1-5, one digit); the score is the expected rating under "
        "its next-token probabilities of the digits 1-5. No training; a placeholder until a head exists."
    )

    def __init__(self, *, config: dict, head_weights_path: str | None = None) -> None:
        # head_weights_path is accepted for a uniform constructor and ignored: nothing is trained.
        self.backbone = HFVLMBackbone(config, allow_adapter=False)
        self.digit_ids = digit_token_ids(self.backbone.tokenizer, self.backbone.directory)

    def score(self, inputs: Sequence[ScoringInput]) -> list[ScoringResult]:
        ids = torch.tensor(self.digit_ids)
        probabilities, errors = self.backbone.run(
            inputs, len(ids), lambda hidden, logits: torch.softmax(logits[:, ids], dim=-1)
        )
        return scoring_results(inputs, probabilities @ torch.arange(1.0, len(ids) + 1.0), errors)


def digit_token_ids(tokenizer: PreTrainedTokenizerBase, directory: Path) -> list[int]:
    """Token ids of "1".."5"; ScoringError unless each digit is exactly one distinct token."""
    ids: list[int] = []
    for digit in RATING_DIGITS:
        encoded = tokenizer.encode(digit, add_special_tokens=False)
        if len(encoded) != 1:
            raise ScoringError(
                f"the tokenizer in {directory} encodes the digit {digit!r} as {len(encoded)} tokens "
                f"{encoded}; zero-shot rating needs each of 1-5 to be a single token"
            )
        ids.append(encoded[0])
    if len(set(ids)) != len(ids):
        raise ScoringError(f"the tokenizer in {directory} maps the digits 1-5 to ids {ids}, which are not distinct")
    return ids
