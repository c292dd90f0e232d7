"""ImageNet-C style image corruptions (Hendrycks & Dietterich, 2019), deterministic per seed,
generated once per image, corruption, severity and seed and cached on disk.

Implemented with numpy, scipy.ndimage, scikit-image and Pillow (the ``imagecorruptions``
package does not run on this stack). Parameters are ImageNet-C's for 224 px images; the
blur and pixelate sizes scale with the image's shorter side so a 640 px image is blurred
as much, relative to its size, as a 224 px one.

Suites: ``pilot`` (gaussian noise, defocus blur, brightness, JPEG at severities 1, 3, 5:
the pilot suite of *Do Safety-Aligned VLMs Degrade Differently Under Common Image
Corruptions?*) and ``full`` (every corruption below at severities 1-5). No database.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage, signal

SEVERITIES = (1, 2, 3, 4, 5)
PILOT = ("gaussian_noise", "defocus_blur", "brightness", "jpeg_compression")
PILOT_SEVERITIES = (1, 3, 5)
NEUTRAL_GREY = (128, 128, 128)
# Bump when a corruption's code or parameters change: cached files of the old code are not reused.
CORRUPTION_CODE_VERSION = "v1"


class CorruptionError(ValueError):
    """An unknown corruption or suite, a severity outside 1-5, or an unusable image."""


def _rng(seed: int, *parts: object) -> np.random.Generator:
    digest = hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def _scale(image: np.ndarray) -> float:
    return min(image.shape[0], image.shape[1]) / 224.0


# Each takes float RGB in [0, 1] (h, w, 3), a severity 1-5 and a numpy Generator, and returns
# float RGB (clipped to [0, 1] by ``corrupt``).
def gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1]
    return x + rng.normal(0.0, c, size=x.shape)


def shot_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (60, 25, 12, 5, 3)[severity - 1]
    return rng.poisson(np.clip(x, 0, 1) * c) / c


def impulse_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
    out = x.copy()
    hit = rng.random(x.shape[:2]) < amount
    salt = rng.random(x.shape[:2]) < 0.5
    out[hit & salt] = 1.0
    out[hit & ~salt] = 0.0
    return out


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    size = int(np.ceil(radius))
    yy, xx = np.mgrid[-size - 2 : size + 3, -size - 2 : size + 3]
    kernel = ((xx**2 + yy**2) <= radius**2).astype(np.float64)
    kernel /= kernel.sum()
    return ndimage.gaussian_filter(kernel, sigma=alias_blur)


def defocus_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, alias = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))[severity - 1]
    kernel = _disk(radius * _scale(x), alias)
    # FFT convolution of the reflect-padded image: the same result as ndimage.convolve, and
    # ~50x faster with the large disks of a 640 px image.
    pad = kernel.shape[0] // 2
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
    out = signal.fftconvolve(padded, kernel[..., None], mode="same", axes=(0, 1))
    return out[pad:-pad, pad:-pad]


def gaussian_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (1, 2, 3, 4, 6)[severity - 1] * _scale(x)
    return ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="reflect")


def brightness(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from skimage.color import hsv2rgb, rgb2hsv

    c = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    hsv = rgb2hsv(np.clip(x, 0, 1))
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return hsv2rgb(hsv)


def contrast(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1]
    means = x.mean(axis=(0, 1), keepdims=True)
    return (x - means) * c + means


def _pil(x: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(x, 0, 1) * 255).round().astype(np.uint8))


def _float(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


def jpeg_compression(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    quality = (25, 18, 15, 10, 7)[severity - 1]
    buffer = io.BytesIO()
    _pil(x).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return _float(decoded)


def pixelate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.6, 0.5, 0.4, 0.3, 0.25)[severity - 1]
    image = _pil(x)
    w, h = image.size
    # ImageNet-C shrinks 224 px to c * 224; a larger image shrinks to the same number of pixels.
    factor = c / _scale(x)
    small = image.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.BOX)
    return _float(small.resize((w, h), Image.Resampling.BOX))


CORRUPTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "gaussian_blur": gaussian_blur,
    "brightness": brightness,
    "contrast": contrast,
    "jpeg_compression": jpeg_compression,
    "pixelate": pixelate,
}
FAMILIES = {
    "gaussian_noise": "noise", "shot_noise": "noise", "impulse_noise": "noise",
    "defocus_blur": "blur", "gaussian_blur": "blur",
    "brightness": "weather", "contrast": "digital", "jpeg_compression": "digital", "pixelate": "digital",
}


def suite(name: str) -> list[tuple[str, int]]:
    """The (corruption, severity) pairs of a suite: ``pilot`` or ``full``."""
    if name == "pilot":
        return [(c, s) for c in PILOT for s in PILOT_SEVERITIES]
    if name == "full":
        return [(c, s) for c in CORRUPTIONS for s in SEVERITIES]
    raise CorruptionError(f"unknown suite {name!r}; choose pilot or full")


def _check(corruption: str, severity: int) -> None:
    if corruption not in CORRUPTIONS:
        raise CorruptionError(f"unknown corruption {corruption!r}; known: {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise CorruptionError(f"severity must be one of 1-5, got {severity!r}")


def corrupt(image: Image.Image, corruption: str, severity: int, *, seed: int, key: str = "") -> Image.Image:
    """``image`` (RGB) under ``corruption`` at ``severity``; the random draws depend only on
    ``seed``, ``key`` (the image's sha256), the corruption and the severity."""
    _check(corruption, severity)
    x = _float(image)
    out = CORRUPTIONS[corruption](x, severity, _rng(seed, key, corruption, severity))
    return _pil(out)


def psnr(a: Image.Image, b: Image.Image) -> float:
    """Peak signal-to-noise ratio in dB of two same-sized RGB images (inf when equal)."""
    x, y = _float(a), _float(b)
    if x.shape != y.shape:
        raise CorruptionError(f"images differ in size: {x.shape} vs {y.shape}")
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def _open_rgb(path: str) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise CorruptionError(f"image file not found: {path}") from None
    except Exception as exc:  # Pillow raises many types for damaged files
        raise CorruptionError(f"not a readable image {path}: {exc}") from None


def _write_once(target: Path, make: Callable[[], Image.Image]) -> Path:
    """``target`` if it exists; else ``make()`` saved as PNG under a private name and renamed into place."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as handle:
            make().save(handle, format="PNG")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def cached_corruption(
    cache_dir: str | os.PathLike[str], image_path: str, image_sha256: str, corruption: str, severity: int, *, seed: int
) -> Path:
    """The file of ``image_path`` under ``corruption`` at ``severity`` (PNG), made once and then reused.

    Keyed by the image's sha256, corruption, severity, seed and the code version; written
    under a private name and renamed, so two workers never see half a file.
    """
    _check(corruption, severity)
    sha = image_sha256 or _sha256_of(image_path)
    target = Path(cache_dir) / CORRUPTION_CODE_VERSION / sha[:2] / f"{sha}-{corruption}-s{severity}-seed{seed}.png"
    return _write_once(target, lambda: corrupt(_open_rgb(image_path), corruption, severity, seed=seed, key=sha))


def cached_neutral(cache_dir: str | os.PathLike[str], image_path: str, image_sha256: str) -> Path:
    """A flat grey image of the same size as ``image_path`` (the modality probe's neutral image)."""
    sha = image_sha256 or _sha256_of(image_path)
    target = Path(cache_dir) / CORRUPTION_CODE_VERSION / sha[:2] / f"{sha}-neutral-grey.png"
    return _write_once(target, lambda: Image.new("RGB", _open_rgb(image_path).size, NEUTRAL_GREY))


def _sha256_of(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError as exc:
        raise CorruptionError(f"cannot read image {path}: {exc}") from None
