"""Tiny, seeded vision-language models of real architectures, written to a local checkpoint.

They let the HF VLM scorer be tested on the very path a real checkpoint takes
(``from_pretrained(local_dir)`` for model, processor, tokenizer and chat template) with no
download. Used by tests and benchmarks only; nothing here scores real pairs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast, ProcessorMixin

TEXT_HIDDEN = 64
TEXT_LAYERS = 2
TEXT_HEADS = 4
TEXT_KV_HEADS = 2
VISION_HIDDEN = 32
VISION_LAYERS = 2
VISION_HEADS = 2
SEED = 1234

_BPE_VOCAB = 640
# The tokenizer's training text: the chat templates' words, the scorer's question and a
# few scenarios. Only its merges depend on this; unseen text still encodes byte by byte.
_CORPUS = (
    "system You are a helpful assistant. user User: assistant Assistant:\n"
    "Setting shown in the image: a child crossing a street\nAction: holding the child's hand\n"
    "How morally acceptable is this action in the situation shown in the image? "
    "Rate it from 1 (completely unacceptable) to 5 (completely acceptable). Answer with one digit.\n"
    "an elderly man at a bus stop, offering him your seat on the crowded bus; a classroom, bullying "
    "the new student; a shop, paying, stealing; a park, feeding the ducks with bread crumbs; "
    "a crying toddler in a supermarket, comforting the toddler and finding a parent; "
    "helping, protecting or caring for someone; hurting, endangering or abusing someone; "
    "an honest, fair and respectful thing to do; a dishonest, unfair or illegal thing to do."
)
_PAD = "<|endoftext|>"
_IM_START = "<|im_start|>"
_IM_END = "<|im_end|>"

QWEN2_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

IDEFICS3_TEMPLATE = (
    "<|im_start|>"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{ line['text'] }}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

LLAVA_ONEVISION_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\n' + content['text'] }}{% endfor %}"
    "{{ '<|im_end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _tokenizer(special_tokens: list[str], chat_template: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``_CORPUS``, with ``special_tokens`` added.

    Byte-level: any text encodes. The few hundred merges keep prompts short (fast tests)
    and leave every digit a single token, as in the real Qwen and SmolLM vocabularies.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend.train_from_iterator([_CORPUS], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=_PAD,
        eos_token=_IM_END,
        additional_special_tokens=[token for token in special_tokens if token not in (_PAD, _IM_END)],
        chat_template=chat_template,
        padding_side="right",
        model_max_length=4096,
    )


def _text_config(vocab_size: int, tokenizer: PreTrainedTokenizerFast, **extra: object) -> dict:
    """The language model: a tiny decoder of the architecture's own family."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 2 * TEXT_HIDDEN,
        "num_hidden_layers": TEXT_LAYERS,
        "num_attention_heads": TEXT_HEADS,
        "num_key_value_heads": TEXT_KV_HEADS,
        "max_position_embeddings": 4096,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": False,
        **extra,
    }


def _siglip_config(image_size: int, patch: int, **extra: object) -> dict:
    """The vision tower of Idefics3 and LLaVA-OneVision: a tiny SigLIP."""
    return {
        "hidden_size": VISION_HIDDEN,
        "intermediate_size": 2 * VISION_HIDDEN,
        "num_hidden_layers": VISION_LAYERS,
        "num_attention_heads": VISION_HEADS,
        "image_size": image_size,
        "patch_size": patch,
        **extra,
    }


def _padded_vocab(tokenizer: PreTrainedTokenizerFast) -> int:
    """Room for every token, rounded up to a multiple of 8 as real checkpoints pad theirs."""
    return len(tokenizer) + (-len(tokenizer)) % 8


def _qwen_vl(directory: Path, version: str) -> None:
    """Qwen2-VL or Qwen2.5-VL: same tokens, template and image processor; the vision towers differ."""
    import transformers
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    specials = [_PAD, _IM_START, _IM_END, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tokenizer = _tokenizer(specials, QWEN2_VL_TEMPLATE)
    ids = tokenizer.convert_tokens_to_ids
    patch, merge = 8, 2
    factor = patch * merge
    # Images are resized to between 2x2 and 4x4 merged patches: 4..16 image tokens.
    image_processor = Qwen2VLImageProcessor(
        patch_size=patch,
        merge_size=merge,
        temporal_patch_size=2,
        size={"shortest_edge": 4 * factor * factor, "longest_edge": 16 * factor * factor},
    )
    vision = {
        "depth": VISION_LAYERS,
        "num_heads": VISION_HEADS,
        "patch_size": patch,
        "spatial_merge_size": merge,
        "temporal_patch_size": 2,
    }
    if version == "2":
        vision |= {"embed_dim": VISION_HIDDEN, "hidden_size": TEXT_HIDDEN, "mlp_ratio": 2}
    else:  # 2.5: gated MLP, windowed attention except in the full-attention blocks
        vision |= {
            "hidden_size": VISION_HIDDEN,
            "intermediate_size": 2 * VISION_HIDDEN,
            "out_hidden_size": TEXT_HIDDEN,
            "window_size": 2 * factor,
            "fullatt_block_indexes": [VISION_LAYERS - 1],
        }
    prefix = "Qwen2VL" if version == "2" else "Qwen2_5_VL"
    config = getattr(transformers, f"{prefix}Config")(
        text_config=_text_config(
            _padded_vocab(tokenizer),
            tokenizer,
            # mrope splits each head's 8 rotary frequencies over (time, height, width)
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        ),
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    processor = getattr(transformers, f"{prefix}Processor")(
        image_processor=image_processor,
        tokenizer=tokenizer,
        # The processor insists on a video processor; videos are never scored.
        video_processor=Qwen2VLVideoProcessor(patch_size=patch, merge_size=merge, temporal_patch_size=2),
        chat_template=QWEN2_VL_TEMPLATE,
    )
    _save(getattr(transformers, f"{prefix}ForConditionalGeneration")(config), processor, directory)


def _idefics3(directory: Path) -> None:
    """Idefics3, the architecture of SmolVLM (v1): SigLIP tower, pixel-shuffle connector, Llama LM."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, Idefics3Processor

    grid = [f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)]
    specials = [_PAD, _IM_START, _IM_END, "<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
    tokenizer = _tokenizer(specials + grid, IDEFICS3_TEMPLATE)
    image_size, patch, scale = 32, 8, 2
    image_seq_len = (image_size // patch) ** 2 // scale**2
    # Images up to 64 px are split into at most 2x2 tiles of 32 px plus the global view.
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": 2 * image_size},
        max_image_size={"longest_edge": image_size},
        do_image_splitting=True,
    )
    config = Idefics3Config(
        text_config=_text_config(_padded_vocab(tokenizer), tokenizer, model_type="llama", rms_norm_eps=1e-5),
        vision_config=_siglip_config(image_size, patch),
        scale_factor=scale,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=IDEFICS3_TEMPLATE,
    )
    _save(Idefics3ForConditionalGeneration(config), processor, directory)


def _llava_onevision(directory: Path) -> None:
    """LLaVA-OneVision: SigLIP tower, "anyres" tiling, Qwen2 LM."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    specials = [_PAD, _IM_START, _IM_END, "<image>", "<video>"]
    tokenizer = _tokenizer(specials, LLAVA_ONEVISION_TEMPLATE)
    image_size, patch = 16, 8
    pinpoints = [[image_size * rows, image_size * cols] for rows in (1, 2) for cols in (1, 2)]
    image_processor = LlavaOnevisionImageProcessor(
        size={"height": image_size, "width": image_size}, image_grid_pinpoints=pinpoints
    )
    config = LlavaOnevisionConfig(
        text_config=_text_config(_padded_vocab(tokenizer), tokenizer, model_type="qwen2"),
        vision_config=_siglip_config(image_size, patch, model_type="siglip_vision_model", vision_use_head=False),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_4",
    )
    processor = LlavaOnevisionProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size={"height": image_size, "width": image_size}),
        num_image_tokens=(image_size // patch) ** 2,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_4",
        chat_template=LLAVA_ONEVISION_TEMPLATE,
    )
    _save(LlavaOnevisionForConditionalGeneration(config), processor, directory)


def _save(model: PreTrainedModel, processor: ProcessorMixin, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)


_BUILDERS: dict[str, Callable[[Path], None]] = {
    "qwen2_vl": lambda directory: _qwen_vl(directory, "2"),
    "qwen2_5_vl": lambda directory: _qwen_vl(directory, "2.5"),
    "idefics3": _idefics3,
    "llava_onevision": _llava_onevision,
}
TINY_ARCHS: tuple[str, ...] = tuple(_BUILDERS)


def build_tiny_vlm(arch: str, directory: str | os.PathLike[str]) -> Path:
    """Write a tiny ``arch`` checkpoint (model, processor, tokenizer, chat template) into ``directory``.

    A few layers of width 64, a vision tower of a few 8x8-pixel patches, a byte-level BPE
    tokenizer trained on a paragraph of text (any text encodes; each digit is one token)
    plus the special tokens the architecture's processor and chat template need, and a
    chat template of the real model's shape.

    The same arch always gives the same weights (the global torch RNG is seeded and
    restored afterwards, so callers' randomness is untouched).
    """
    if arch not in _BUILDERS:
        raise ValueError(f"unknown tiny VLM arch {arch!r}; choose one of {', '.join(TINY_ARCHS)}")
    directory = Path(directory)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        _BUILDERS[arch](directory)
    return directory
