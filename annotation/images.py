"""Checking uploaded context images before anything is stored.

Pillow decides what an image is; the file name and the browser's content type are not
trusted. A file that is not a raster image, is truncated, is larger than
``MORALE_MAX_IMAGE_BYTES`` or decodes to more than ``MORALE_MAX_IMAGE_PIXELS`` pixels
(a decompression bomb) is refused with a message that says which.
"""

import hashlib
import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image, UnidentifiedImageError

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP"}


@dataclass(frozen=True)
class CheckedImage:
    sha256: str
    width: int
    height: int
    format: str


def check_image_upload(uploaded) -> CheckedImage:
    """Validate an uploaded file as a context image; raise ValidationError if it is not one.

    Reads the file fully (size-bounded) and rewinds it, so the caller can store it.
    """
    max_bytes = settings.MORALE_MAX_IMAGE_BYTES
    max_pixels = settings.MORALE_MAX_IMAGE_PIXELS
    size = getattr(uploaded, "size", None)
    if size is not None and size > max_bytes:
        raise ValidationError(
            f"The image is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB.", code="image_too_large"
        )
    uploaded.seek(0)
    data = uploaded.read(max_bytes + 1)
    uploaded.seek(0)
    if len(data) > max_bytes:
        raise ValidationError(f"The image is larger than {max_bytes / 1e6:.1f} MB.", code="image_too_large")
    if not data:
        raise ValidationError("The file is empty.", code="image_empty")

    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; treat it as the error it is.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in ALLOWED_FORMATS:
                    raise ValidationError(
                        f"Images must be one of {', '.join(sorted(ALLOWED_FORMATS))}; this is {image.format}.",
                        code="image_format",
                    )
                width, height = image.size
                if width * height > max_pixels:
                    raise ValidationError(
                        f"The image is {width}x{height} pixels; the limit is {max_pixels:,} pixels "
                        "(this guards against decompression bombs).",
                        code="image_too_many_pixels",
                    )
                image.load()  # decode fully: a truncated file fails here, not later in a worker
                fmt = image.format
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValidationError(
                "The image decodes to far more pixels than its file size suggests (a decompression bomb).",
                code="image_bomb",
            ) from None
        except UnidentifiedImageError:
            raise ValidationError("The file is not an image Pillow can read.", code="image_invalid") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ValidationError(f"The image is broken or truncated ({exc}).", code="image_broken") from None
    return CheckedImage(sha256=hashlib.sha256(data).hexdigest(), width=width, height=height, format=fmt)
