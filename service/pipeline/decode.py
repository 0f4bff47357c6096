"""Image bytes -> RGB array, refusing what should never reach a model.

Limits are checked before any pixel is decoded: the byte size first, then the pixel count
read from the header (a 30000x30000 PNG is a few KB on the wire and 2.7 GB once decoded).
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SUPPORTED_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "MPO"}  # MPO: multi-picture JPEGs from phones


class ImageError(ValueError):
    """A client-side image problem; `code` and `status` map straight onto the HTTP error."""

    def __init__(self, code: str, message: str, status: int = 422):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def decode_image(data: bytes, max_bytes: int = 10 * 2**20, max_pixels: int = 40_000_000) -> np.ndarray:
    """(H, W, 3) uint8 RGB with the EXIF orientation applied."""
    if not data:
        raise ImageError("empty_image", "the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError("image_too_large", f"the image is {len(data)} bytes; the limit is {max_bytes}", status=413)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("invalid_image", "the data is not an image in a supported format (JPEG, PNG, WebP, BMP)", status=415) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("image_too_large", "the image has too many pixels", status=413) from None
    if image.format not in SUPPORTED_FORMATS:
        raise ImageError("unsupported_image_format", f"{image.format} images are not supported (JPEG, PNG, WebP, BMP)", status=415)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError("image_too_large", f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}", status=413)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        rgb = image.convert("RGB")  # palette, grey, 16-bit and alpha (32-bit PNG) all end as RGB
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError("corrupt_image", f"the {image.format} image cannot be decoded: {error}") from None
    return np.asarray(rgb, dtype=np.uint8)
