"""Every image corruption: the severity raises the distortion (PSNR falls), the same seed
gives the same bytes, files are made once and cached by image, corruption, severity and seed."""

import hashlib
import io

import pytest
from PIL import Image

from annotation.demo.content import DEMO_CONTEXTS
from training.probes import corruptions


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> tuple[Image.Image, str, str]:
    """A demo image (a drawn scene), shrunk to 160 px so 45 corruptions run in seconds."""
    image = Image.open(io.BytesIO(DEMO_CONTEXTS[0].png_bytes())).convert("RGB")
    image.thumbnail((160, 160))
    path = tmp_path_factory.mktemp("photo") / "street.png"
    image.save(path)
    return image, str(path), hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(corruptions.CORRUPTIONS))
def test_severity_raises_the_distortion(name, photo):
    image, _, sha = photo
    values = [corruptions.psnr(image, corruptions.corrupt(image, name, s, seed=0, key=sha)) for s in corruptions.SEVERITIES]
    assert values[0] < float("inf") and values[-1] < 30, values  # every severity changes the image
    assert all(a > b for a, b in zip(values, values[1:])), values


@pytest.mark.parametrize("name", sorted(corruptions.CORRUPTIONS))
def test_same_seed_same_bytes(name, photo, tmp_path):
    image, path, sha = photo
    first = corruptions.cached_corruption(tmp_path / "a", path, sha, name, 3, seed=5)
    again = corruptions.cached_corruption(tmp_path / "b", path, sha, name, 3, seed=5)
    assert first.read_bytes() == again.read_bytes()
    assert first.name == f"{sha}-{name}-s3-seed5.png"
    assert Image.open(first).size == image.size
    if name in ("gaussian_noise", "shot_noise", "impulse_noise"):  # the random ones
        other = corruptions.cached_corruption(tmp_path / "a", path, sha, name, 3, seed=6)
        assert other.read_bytes() != first.read_bytes()


def test_a_cached_file_is_made_once(photo, tmp_path, monkeypatch):
    _, path, sha = photo
    made = corruptions.cached_corruption(tmp_path, path, sha, "gaussian_noise", 1, seed=0)
    monkeypatch.setattr(corruptions, "corrupt", lambda *a, **k: pytest.fail("made twice"))
    assert corruptions.cached_corruption(tmp_path, path, sha, "gaussian_noise", 1, seed=0) == made
    assert not [p for p in made.parent.iterdir() if p.name.startswith(".tmp-")]


def test_neutral_image_is_flat_grey_of_the_same_size(photo, tmp_path):
    image, path, sha = photo
    grey = Image.open(corruptions.cached_neutral(tmp_path, path, sha))
    assert grey.size == image.size and grey.getcolors() == [(image.size[0] * image.size[1], corruptions.NEUTRAL_GREY)]


def test_suites():
    pilot = corruptions.suite("pilot")
    assert pilot == [(c, s) for c in ("gaussian_noise", "defocus_blur", "brightness", "jpeg_compression") for s in (1, 3, 5)]
    assert len(corruptions.suite("full")) == 5 * len(corruptions.CORRUPTIONS)
    with pytest.raises(corruptions.CorruptionError, match="unknown suite"):
        corruptions.suite("fog")


def test_bad_input_gets_a_clear_error(photo, tmp_path):
    image, path, sha = photo
    with pytest.raises(corruptions.CorruptionError, match="severity must be one of 1-5"):
        corruptions.corrupt(image, "brightness", 6, seed=0)
    with pytest.raises(corruptions.CorruptionError, match="unknown corruption"):
        corruptions.corrupt(image, "snow", 1, seed=0)
    with pytest.raises(corruptions.CorruptionError, match="image file not found"):
        corruptions.cached_corruption(tmp_path, str(tmp_path / "gone.png"), "f" * 64, "brightness", 1, seed=0)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(corruptions.CorruptionError, match="not a readable image"):
        corruptions.cached_corruption(tmp_path, str(broken), "e" * 64, "brightness", 1, seed=0)
