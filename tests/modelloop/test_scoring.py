"""Offline scorers: real local backbones, images written with Pillow, no database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from modelloop.scoring import ScoringError, ScoringInput, scorer_registry
from modelloop.scoring.features import load_image
from modelloop.scoring.offline import (
    FEATURE_DIM,
    EfficientNetMiniLMHeadScorer,
    ScoreHead,
    ZeroShotTextBaselineScorer,
    extract_features,
    load_head,
    save_head,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

CLEAR_PAIRS = [  # (setting, clearly acceptable, clearly unacceptable)
    ("child crossing a street", "helping the child cross safely", "pushing the child into traffic"),
    ("an elderly man at a bus stop", "offering him your seat", "stealing his wallet"),
    (
        "a crying toddler in a supermarket",
        "comforting the toddler and finding a parent",
        "yelling at the toddler to shut up",
    ),
    ("a classroom", "helping a struggling classmate", "bullying the new student"),
]


def write_image(path: Path, size: tuple[int, int], seed: int = 0, fmt: str = "PNG") -> Path:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size[1], size[0], 3), dtype=torch.uint8, generator=generator)
    Image.frombytes("RGB", size, pixels.numpy().tobytes()).save(path, fmt)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    return [
        write_image(folder / "a.png", (320, 240), seed=1),
        write_image(folder / "b.jpg", (200, 300), seed=2, fmt="JPEG"),
        write_image(folder / "c.png", (64, 64), seed=3),
    ]


@pytest.fixture(scope="module")
def head_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("heads") / "head.safetensors"
    save_head(ScoreHead(), path)
    return path


@pytest.fixture(scope="module")
def zero_shot() -> ZeroShotTextBaselineScorer:
    return ZeroShotTextBaselineScorer(config={})


@pytest.fixture(scope="module")
def head_scorer(head_path: Path) -> EfficientNetMiniLMHeadScorer:
    return EfficientNetMiniLMHeadScorer(config={}, head_weights_path=str(head_path))


def pairs_for(images: list[Path]) -> list[ScoringInput]:
    texts = [pair for setting, good, bad in CLEAR_PAIRS for pair in ((setting, good), (setting, bad))]
    return [
        ScoringInput(i, str(images[i % len(images)]), setting, text) for i, (setting, text) in enumerate(texts)
    ]


def test_registry_keys() -> None:
    assert set(scorer_registry()) == {
        "zero-shot-text-baseline", "image-aware-prior", "efficientnet-minilm-mlp", "hf-vlm-zero-shot", "hf-vlm-head"
    }


def test_zero_shot_orders_clear_pairs(zero_shot: ZeroShotTextBaselineScorer) -> None:
    inputs = [
        ScoringInput(i, "/nonexistent.png", setting, text)
        for i, (setting, good, bad) in enumerate(CLEAR_PAIRS)
        for text in (good, bad)
    ]
    scores = [result.score for result in zero_shot.score(inputs)]
    for i, (_, good, bad) in enumerate(CLEAR_PAIRS):
        good_score, bad_score = scores[2 * i], scores[2 * i + 1]
        assert good_score is not None and bad_score is not None
        assert good_score > bad_score + 0.3, f"{good!r} {good_score:.2f} vs {bad!r} {bad_score:.2f}"


def test_zero_shot_never_loads_image_model() -> None:
    code = (
        "import sys\n"
        "from modelloop.scoring import ScoringInput\n"
        "from modelloop.scoring.offline import ZeroShotTextBaselineScorer\n"
        "r = ZeroShotTextBaselineScorer(config={}).score([ScoringInput(1, '/missing.png', 's', 't')])\n"
        "assert r[0].ok, r\n"
        "assert 'efficientnet_lite_pytorch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, capture_output=True)


def test_zero_shot_temperature_config(zero_shot: ZeroShotTextBaselineScorer) -> None:
    inputs = [ScoringInput(1, "", *CLEAR_PAIRS[0][:2])]
    cool = ZeroShotTextBaselineScorer(config={"temperature": 1.0}).score(inputs)[0].score
    default = zero_shot.score(inputs)[0].score
    assert cool is not None and default is not None and 3.0 < cool < default
    with pytest.raises(ScoringError):
        ZeroShotTextBaselineScorer(config={"temperature": "hot"})


def test_scores_within_scale(zero_shot: ZeroShotTextBaselineScorer, images: list[Path], tmp_path: Path) -> None:
    inputs = pairs_for(images) + [ScoringInput(99, str(images[0]), "", "")]
    for result in zero_shot.score(inputs):
        assert result.score is not None and 1.0 <= result.score <= 5.0
    # A head with huge weights saturates the sigmoid: still on the scale.
    head = ScoreHead()
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.mul_(1000.0)
    save_head(head, tmp_path / "big.safetensors")
    scorer = EfficientNetMiniLMHeadScorer(config={}, head_weights_path=str(tmp_path / "big.safetensors"))
    for result in scorer.score(inputs):
        assert result.score is not None and 1.0 <= result.score <= 5.0


def test_bad_images_fail_alone(
    head_scorer: EfficientNetMiniLMHeadScorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    good = write_image(tmp_path / "good.png", (30, 30))  # 900 pixels: under the limit
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    jpeg_bytes = write_image(tmp_path / "full.jpg", (30, 30), fmt="JPEG").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg_bytes[: len(jpeg_bytes) // 2])
    bomb_error = write_image(tmp_path / "bomb.png", (100, 100))  # > 2x limit: Pillow raises
    bomb_warning = write_image(tmp_path / "bomb_warn.png", (40, 40))  # between 1x and 2x: Pillow only warns
    paths = [corrupt, good, truncated, tmp_path / "missing.png", bomb_error, bomb_warning, tmp_path]
    inputs = [ScoringInput(i, str(p), "a street", "crossing it") for i, p in enumerate(paths)]

    results = head_scorer.score(inputs)

    assert [r.scenario_id for r in results] == list(range(len(paths)))
    assert results[1].ok and results[1].error == ""
    failed = {i: r.error for i, r in enumerate(results) if i != 1}
    assert all(r.score is None for i, r in enumerate(results) if i != 1)
    assert "not a readable image" in failed[0]
    assert "truncated" in failed[2]
    assert "not found" in failed[3]
    assert "decompression bomb" in failed[4]
    assert "decompression bomb" in failed[5]
    assert "cannot open" in failed[6]


def test_exif_orientation_applied(tmp_path: Path) -> None:
    upright = tmp_path / "upright.png"
    write_image(upright, (40, 60), seed=4)
    with Image.open(upright) as img:
        stored = img.transpose(Image.Transpose.ROTATE_90)  # how a camera stores a portrait shot
        exif = Image.Exif()
        exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
        stored.save(tmp_path / "rotated.png", exif=exif)
    assert torch.allclose(load_image(str(upright)), load_image(str(tmp_path / "rotated.png")))


def test_feature_dim(images: list[Path], head_scorer: EfficientNetMiniLMHeadScorer) -> None:
    inputs = pairs_for(images)[:3]
    features, errors = extract_features(inputs)
    assert FEATURE_DIM == head_scorer.feature_dim == 1664
    assert torch.allclose(head_scorer.features(inputs)[0], features, atol=1e-6)  # what the cache stores
    assert features.shape == (3, FEATURE_DIM) and features.dtype == torch.float32
    assert errors == ["", "", ""]
    assert torch.allclose(features[:, 1280:].norm(dim=1), torch.ones(3), atol=1e-5)  # text part is unit length


def test_head_round_trip(tmp_path: Path) -> None:
    config = {"hidden": 32, "dropout": 0.2}
    head = ScoreHead.from_config(config).eval()
    save_head(head, tmp_path / "h.safetensors")
    loaded = load_head(tmp_path / "h.safetensors", config)
    features = torch.randn(8, FEATURE_DIM)
    with torch.no_grad():
        assert torch.allclose(head(features), loaded(features))
    with pytest.raises(ScoringError, match="do not fit 1664-d features"):
        load_head(tmp_path / "h.safetensors", {"hidden": 64})


def test_head_scorer_needs_valid_weights(tmp_path: Path) -> None:
    with pytest.raises(ScoringError, match="not found"):
        EfficientNetMiniLMHeadScorer(config={}, head_weights_path=str(tmp_path / "missing.safetensors"))
    with pytest.raises(ScoringError, match="needs head weights"):
        EfficientNetMiniLMHeadScorer(config={}, head_weights_path=None)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00not safetensors at all")
    with pytest.raises(ScoringError, match="not valid safetensors"):
        EfficientNetMiniLMHeadScorer(config={}, head_weights_path=str(garbage))


@pytest.mark.parametrize("scorer_fixture", ["zero_shot", "head_scorer"])
def test_batched_equals_one_at_a_time(
    scorer_fixture: str, images: list[Path], request: pytest.FixtureRequest
) -> None:
    scorer = request.getfixturevalue(scorer_fixture)
    inputs = pairs_for(images)
    batched = [r.score for r in scorer.score(inputs)]
    single = [scorer.score([item])[0].score for item in inputs]
    assert torch.allclose(torch.tensor(batched), torch.tensor(single), atol=1e-4)
