"""Checking uploaded context images before anything is stored, naming and serving them.

Pillow decides what an image is; the file name and the browser's content type are not
trusted. A file that is not a raster image, is truncated, is larger than
``MORALE_MAX_IMAGE_BYTES`` or decodes to more than ``MORALE_MAX_IMAGE_PIXELS`` pixels
(a decompression bomb) is refused with a message that says which.

The name a context image is stored under comes from what Pillow detected too, never from
the uploaded name: ``<sha256>.<extension of the detected format>`` (``CheckedImage.file_name``
for an upload, ``image_file_name`` for bytes an import holds; one rule, ``_file_name``). So
a PNG uploaded or imported as ``poly.html`` is stored as ``<sha256>.png``, and no stored
name can make a web server send it as HTML. ``served_content_type`` is what ``/media/``
sends: the type Pillow detects in the stored file, whatever its name.
"""

import hashlib
import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from PIL import Image, UnidentifiedImageError

# Pillow format -> (file extension, content type): the only images stored and served.
FORMATS = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
}
ALLOWED_FORMATS = set(FORMATS)


@dataclass(frozen=True)
class CheckedImage:
    sha256: str
    width: int
    height: int
    format: str

    @property
    def file_name(self) -> str:
        """The name to store this image under (``_file_name``)."""
        return _file_name(self.sha256, self.format)


def _file_name(sha256: str, fmt: str) -> str:
    """The one rule for a stored context image's name: its sha256 and the extension of the
    format Pillow detected (the storage adds a suffix before the extension if it exists)."""
    return f"{sha256}.{FORMATS[fmt][0]}"


def _detected_format(source) -> str | None:
    """The allowed format Pillow reads in a file's header (path or file object), or None."""
    try:
        with Image.open(source, formats=sorted(ALLOWED_FORMATS)) as image:
            return image.format
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def image_file_name(data: bytes) -> str:
    """The name to store these image bytes under, for a caller that holds the bytes of an
    image ``check_image_upload`` accepted (the importer). ValueError if they are no image."""
    fmt = _detected_format(io.BytesIO(data))
    if fmt is None:
        raise ValueError("these bytes are not an image of an allowed format")
    return _file_name(hashlib.sha256(data).hexdigest(), fmt)


def stored_upload(uploaded, checked: CheckedImage) -> File:
    """The upload to assign to ``Context.image``, named by ``checked.file_name`` (the field's
    ``upload_to`` adds the folder) instead of the name the browser sent."""
    return File(uploaded, name=checked.file_name)


def served_content_type(path) -> str | None:
    """The content type ``/media/`` sends for a stored image: what Pillow detects in the
    file (never its name's extension); None if it holds no image of an allowed format."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked at upload; only the header is read
        fmt = _detected_format(path)
    return None if fmt is None else FORMATS[fmt][1]


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
