"""HF VLM scorers on tiny, randomly initialised models of real architectures (CPU, offline).

Each tiny checkpoint is written once per session by ``build_tiny_vlm`` and loaded back
through the same ``from_pretrained(local_dir)`` path a real checkpoint takes. No database.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from modelloop.scoring import ScoringError, ScoringInput
from modelloop.scoring.hf_vlm import (
    HFVLMBackbone,
    HFVLMHeadScorer,
    HFVLMZeroShotScorer,
    apply_lora,
    digit_token_ids,
    last_token_index,
    last_token_outputs,
    load_pil_image,
    load_vlm,
    resize_to_fit,
    save_lora,
)
from modelloop.scoring.offline import ScoreHead, save_head
from modelloop.testing.tiny_vlms import TEXT_HIDDEN, TEXT_LAYERS, TINY_ARCHS, build_tiny_vlm

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: every load is a local directory anyway

CPU = torch.device("cpu")
# peft calls a transformers method that transformers 5 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def write_image(path: Path, size: tuple[int, int], seed: int) -> Path:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size[1], size[0], 3), dtype=torch.uint8, generator=generator)
    Image.frombytes("RGB", size, pixels.numpy().tobytes()).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_vlms")
    return {arch: build_tiny_vlm(arch, root / arch) for arch in TINY_ARCHS}


@pytest.fixture(scope="module", params=TINY_ARCHS)
def arch(request: pytest.FixtureRequest) -> str:
    """Module-scoped, so pytest runs one architecture's tests together (its model stays cached)."""
    return request.param


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("vlm_images")
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return {
        "wide": write_image(folder / "wide.png", (800, 400), seed=1),
        "tall": write_image(folder / "tall.png", (60, 90), seed=2),
        "square": write_image(folder / "square.png", (300, 300), seed=3),
        "sliver": write_image(folder / "sliver.png", (250, 1), seed=4),  # Qwen's processor refuses ratios > 200
        "corrupt": corrupt,
    }


@pytest.fixture(scope="session")
def pairs(images: dict[str, Path]) -> list[ScoringInput]:
    texts = [
        ("wide", "a child crossing a street", "holding the child's hand"),
        ("tall", "an elderly man at a bus stop", "offering him your seat on the crowded bus"),
        ("square", "a classroom", "bullying the new student"),
        ("wide", "a shop", "paying"),
        ("tall", "a park", "feeding the ducks with bread crumbs"),
    ]
    return [ScoringInput(i + 1, str(images[img]), setting, text) for i, (img, setting, text) in enumerate(texts)]


def config_for(directory: Path, **extra) -> dict:
    return {"backbone_path": str(directory), "head": {"hidden": 16}, **extra}


def head_file(tmp_path: Path, in_dim: int, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    path = tmp_path / "head.safetensors"
    save_head(ScoreHead(in_dim=in_dim, hidden=16), path)
    return path


# --- per architecture ---------------------------------------------------------------------
def test_features_shape(arch: str, tiny_dirs: dict[str, Path], pairs: list[ScoringInput]) -> None:
    backbone = HFVLMBackbone(config_for(tiny_dirs[arch]))
    features, errors = backbone.features(pairs)
    assert features.shape == (len(pairs), backbone.hidden_size)
    assert features.dtype == torch.float32
    assert errors == [""] * len(pairs)
    assert torch.isfinite(features).all() and features.abs().sum(dim=1).gt(0).all()


def test_pooling_ignores_padding_side(
    arch: str, tiny_dirs: dict[str, Path], pairs: list[ScoringInput], monkeypatch: pytest.MonkeyPatch
) -> None:
    backbone = HFVLMBackbone(config_for(tiny_dirs[arch]))
    results = {}
    for side in ("left", "right"):
        monkeypatch.setattr(backbone.tokenizer, "padding_side", side)
        prompts = [backbone.chat_text(p.setting, p.text) for p in pairs[:2]]
        mask = backbone.encode([load_pil_image(p.image_path, 336) for p in pairs[:2]], prompts)["attention_mask"]
        padded_column = 0 if side == "left" else -1
        assert not mask[:, padded_column].all(), "the two prompts must differ in length"
        results[side], _ = backbone.features(pairs)
    torch.testing.assert_close(results["left"], results["right"], atol=1e-4, rtol=1e-4)


def test_processor_receives_resized_images(
    arch: str, tiny_dirs: dict[str, Path], pairs: list[ScoringInput], monkeypatch: pytest.MonkeyPatch
) -> None:
    backbone = HFVLMBackbone(config_for(tiny_dirs[arch]))
    seen: list[tuple[int, int]] = []
    encode = backbone.encode

    def recording_encode(imgs, prompts):
        seen.extend(image.size for image in imgs)
        return encode(imgs, prompts)

    monkeypatch.setattr(backbone, "encode", recording_encode)
    backbone.features(pairs[:3])
    assert seen == [(336, 168), (60, 90), (300, 300)]


def test_zero_shot_is_expected_digit(arch: str, tiny_dirs: dict[str, Path], pairs: list[ScoringInput]) -> None:
    scorer = HFVLMZeroShotScorer(config={"backbone_path": str(tiny_dirs[arch])})
    results = scorer.score(pairs)
    assert all(r.ok and 1.0 <= r.score <= 5.0 for r in results)

    # By hand, without the scorer's pooling: full logits of a single unpadded example.
    backbone, item = scorer.backbone, pairs[1]
    batch = backbone.processor(
        text=[backbone.chat_text(item.setting, item.text)],
        images=[load_pil_image(item.image_path, 336)],
        return_tensors="pt",
    )
    with torch.no_grad():
        logits = backbone.model(**batch).logits[0, -1]
    probabilities = torch.softmax(logits[scorer.digit_ids], dim=0)
    expected = float((probabilities * torch.arange(1.0, 6.0)).sum())
    assert results[1].score == pytest.approx(expected, abs=1e-4)


def test_head_scorer_reloads_from_saved_files(
    arch: str, tiny_dirs: dict[str, Path], pairs: list[ScoringInput], tmp_path: Path
) -> None:
    backbone = HFVLMBackbone(config_for(tiny_dirs[arch]))
    torch.manual_seed(3)
    head = ScoreHead(in_dim=backbone.hidden_size, hidden=16).eval()
    save_head(head, tmp_path / "head.safetensors")

    first = HFVLMHeadScorer(config=config_for(tiny_dirs[arch]), head_weights_path=str(tmp_path / "head.safetensors"))
    second = HFVLMHeadScorer(config=config_for(tiny_dirs[arch]), head_weights_path=str(tmp_path / "head.safetensors"))
    assert second.backbone.model is first.backbone.model, "the backbone is loaded once per process"
    assert first.feature_dim == backbone.hidden_size

    scores = [r.score for r in first.score(pairs)]
    again = [r.score for r in second.score(pairs)]
    features, _ = first.features(pairs)
    with torch.no_grad():
        by_hand = head(features)
    assert torch.allclose(torch.tensor(scores), torch.tensor(again))
    assert torch.allclose(torch.tensor(scores), by_hand, atol=1e-6)
    assert all(1.0 <= s <= 5.0 for s in scores)


def test_lora_targets_only_language_model_and_reloads(
    arch: str, tiny_dirs: dict[str, Path], pairs: list[ScoringInput], tmp_path: Path
) -> None:
    _, model = load_vlm(tiny_dirs[arch], device=CPU, dtype=torch.float32)
    decoder = model.get_decoder()
    decoder_prefix = next(name for name, module in model.named_modules() if module is decoder)
    expected = {
        f"{decoder_prefix}.{name}"
        for name, _ in decoder.named_modules()
        if name.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "o_proj")
    }
    assert len(expected) == 4 * TEXT_LAYERS

    peft_model = apply_lora(model)
    adapted = {
        name.removeprefix("base_model.model.")
        for name, module in peft_model.named_modules()
        if hasattr(module, "lora_A")
    }
    assert adapted == expected
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    assert all(name.removeprefix("base_model.model.").startswith(decoder_prefix + ".") for name in trainable)

    # A trained adapter: B is zero at initialisation, which would make every check trivial.
    torch.manual_seed(5)
    for module in peft_model.modules():
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.5)
    peft_model.eval()
    adapter_dir = save_lora(peft_model, tmp_path / "adapter")

    head_path = head_file(tmp_path, model.config.get_text_config().hidden_size)
    base = HFVLMHeadScorer(config=config_for(tiny_dirs[arch]), head_weights_path=str(head_path))
    tuned = HFVLMHeadScorer(
        config=config_for(tiny_dirs[arch], lora_adapter_path=str(adapter_dir)), head_weights_path=str(head_path)
    )
    assert tuned.backbone_ref != base.backbone_ref and "+lora:adapter" in tuned.backbone_ref

    pairs = pairs[:3]
    batch = base.backbone.encode(
        [load_pil_image(p.image_path, 336) for p in pairs], [base.backbone.chat_text(p.setting, p.text) for p in pairs]
    )
    with torch.no_grad():
        trained_features, _ = last_token_outputs(peft_model, batch)
    reloaded, errors = tuned.features(pairs)
    frozen, _ = base.features(pairs)
    assert errors == [""] * len(pairs)
    assert torch.allclose(reloaded, trained_features, atol=1e-5)
    assert not torch.allclose(reloaded, frozen, atol=1e-3)


# --- failures, batching and identity (Qwen2-VL: its processor also refuses slivers) ---------
def test_bad_pairs_fail_alone(
    tiny_dirs: dict[str, Path], pairs: list[ScoringInput], images: dict[str, Path], tmp_path: Path
) -> None:
    directory = tiny_dirs["qwen2_vl"]
    backbone = HFVLMBackbone(config_for(directory))
    longest = max(len(backbone.tokenizer(backbone.chat_text(p.setting, p.text))["input_ids"]) for p in pairs)
    limit = longest + 10  # every pair of the fixture fits; the long one below does not
    scorer = HFVLMHeadScorer(
        config=config_for(directory, max_text_tokens=limit), head_weights_path=str(head_file(tmp_path, TEXT_HIDDEN))
    )
    batch = [
        *pairs[:2],
        ScoringInput(90, str(images["corrupt"]), "a street", "helping"),
        ScoringInput(91, str(images["square"]), "a street", "helping the child cross the road " * 20),
        ScoringInput(92, str(images["wide"]) + ".missing", "a street", "helping"),
        ScoringInput(93, str(images["sliver"]), "a street", "helping"),
        *pairs[2:],
    ]
    results = scorer.score(batch)
    assert [r.scenario_id for r in results] == [b.scenario_id for b in batch]
    failed = {r.scenario_id: r.error for r in results if not r.ok}
    assert set(failed) == {90, 91, 92, 93}
    assert "corrupt.png" in failed[90] and ("not a readable image" in failed[90] or "corrupt" in failed[90])
    assert "text too long" in failed[91] and f"max_text_tokens={limit}" in failed[91]
    assert "not found" in failed[92]
    assert "processor rejected this pair" in failed[93] and "aspect ratio" in failed[93]
    alone = scorer.score(pairs)
    assert torch.allclose(
        torch.tensor([r.score for r in results if r.ok]), torch.tensor([r.score for r in alone]), atol=1e-5
    )


def test_out_of_memory_halves_the_batch(
    tiny_dirs: dict[str, Path], pairs: list[ScoringInput], monkeypatch: pytest.MonkeyPatch
) -> None:
    backbone = HFVLMBackbone(config_for(tiny_dirs["qwen2_vl"], batch_size=8))
    expected, _ = backbone.features(pairs)
    forward = backbone._forward
    sizes: list[int] = []

    def small_batches_only(batch):
        sizes.append(len(batch["input_ids"]))
        if sizes[-1] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(batch)

    monkeypatch.setattr(backbone, "_forward", small_batches_only)
    features, errors = backbone.features(pairs)
    assert errors == [""] * len(pairs)
    assert sizes == [5, 2, 3, 1, 2]  # 5 -> 2 + 3 -> 3 -> 1 + 2
    torch.testing.assert_close(features, expected, atol=1e-4, rtol=1e-4)

    def never(batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(backbone, "_forward", never)
    features, errors = backbone.features(pairs[:3])
    assert errors == ["out of GPU memory even at batch size 1"] * 3
    assert not features.any()


def test_backbone_ref_tracks_preprocessing(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    directory = tiny_dirs["qwen2_vl"]
    ref = HFVLMBackbone(config_for(directory)).backbone_ref
    assert ref.startswith(f"hf:{directory.name}:")
    assert HFVLMBackbone(config_for(directory, batch_size=2, max_text_tokens=100)).backbone_ref == ref
    assert HFVLMBackbone(config_for(directory, max_image_side=224)).backbone_ref != ref

    # Retrained weights of the same shapes: same file names and sizes, other bytes.
    copy = tmp_path / directory.name
    shutil.copytree(directory, copy)
    weights = load_file(copy / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1.0
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    assert (copy / "model.safetensors").stat().st_size == (directory / "model.safetensors").stat().st_size
    assert HFVLMBackbone(config_for(copy)).backbone_ref != ref


def test_missing_or_broken_model_directory(tmp_path: Path) -> None:
    with pytest.raises(ScoringError, match="VLM backbone directory not found: .*nowhere"):
        HFVLMZeroShotScorer(config={"backbone_path": str(tmp_path / "nowhere")})
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(ScoringError, match=r"no config\.json in VLM backbone directory .*broken"):
        HFVLMZeroShotScorer(config={"backbone_path": str(broken)})
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ScoringError, match=r"config\.json in VLM backbone directory .*broken is not valid JSON"):
        HFVLMZeroShotScorer(config={"backbone_path": str(broken)})
    (broken / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    with pytest.raises(ScoringError, match=r"no weight files"):
        HFVLMZeroShotScorer(config={"backbone_path": str(broken)})
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ScoringError, match=r"cannot load the VLM in .*broken"):
        HFVLMZeroShotScorer(config={"backbone_path": str(broken)})
    with pytest.raises(ScoringError, match="backbone_path"):
        HFVLMZeroShotScorer(config={})


def test_bad_config_and_head(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    directory = tiny_dirs["qwen2_vl"]
    with pytest.raises(ScoringError, match="needs head weights"):
        HFVLMHeadScorer(config=config_for(directory))
    with pytest.raises(ScoringError, match=f"do not fit {TEXT_HIDDEN}-d features"):
        HFVLMHeadScorer(config=config_for(directory), head_weights_path=str(head_file(tmp_path, 32)))
    with pytest.raises(ScoringError, match="'dtype'"):
        HFVLMBackbone(config_for(directory, dtype="float16"))
    with pytest.raises(ScoringError, match="'max_image_side'"):
        HFVLMBackbone(config_for(directory, max_image_side=0))
    with pytest.raises(ScoringError, match="LoRA adapter directory not found"):
        HFVLMBackbone(config_for(directory, lora_adapter_path=str(tmp_path / "no-adapter")))
    with pytest.raises(ScoringError, match="'lora_adapter_path' is not supported"):
        HFVLMZeroShotScorer(config=config_for(directory, lora_adapter_path=str(tmp_path)))
    if not torch.cuda.is_available():
        with pytest.raises(ScoringError, match="no CUDA GPU"):
            HFVLMBackbone(config_for(directory, device="cuda"))


def test_digits_must_be_single_tokens() -> None:
    class SplitsDigits:
        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return [7, 100 + int(text)]

    with pytest.raises(ScoringError, match="encodes the digit '1' as 2 tokens"):
        digit_token_ids(SplitsDigits(), Path("/models/x"))


# --- helpers ------------------------------------------------------------------------------
def test_resize_keeps_aspect_ratio() -> None:
    assert resize_to_fit(Image.new("RGB", (1000, 500)), 336).size == (336, 168)
    assert resize_to_fit(Image.new("RGB", (400, 1200)), 336).size == (112, 336)
    small = Image.new("RGB", (200, 100))
    assert resize_to_fit(small, 336) is small


def test_weight_fingerprint_samples_big_files(tmp_path: Path) -> None:
    from modelloop.scoring.hf_vlm import _sample_bytes

    data = bytes(range(256)) * (3 * 4096)  # 3 MiB
    (tmp_path / "big.bin").write_bytes(data)
    sample = _sample_bytes(tmp_path / "big.bin")
    assert len(sample) == 16 * 64 * 1024
    assert sample.startswith(data[: 64 * 1024]) and sample.endswith(data[-64 * 1024 :])


def test_last_token_index_either_padding_side() -> None:
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]])
    assert last_token_index(right).tolist() == [2, 3, 0]
    assert last_token_index(left).tolist() == [3, 3, 3]


def test_tiny_build_is_deterministic(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    arch = TINY_ARCHS[-1]
    again = build_tiny_vlm(arch, tmp_path / arch)
    first, second = load_file(tiny_dirs[arch] / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
