"""Image bytes -> RGB array, refusing what should never reach a model.

`decode_image` is the one place untrusted image bytes are parsed. Every failure of the decoder
becomes an `ImageError` (a 4xx with the API's error shape), never an exception the server did not
expect. Limits are checked before any pixel is decoded: the byte size first, then the pixel count
read from the header (a 30000x30000 PNG is a few KB on the wire and 2.7 GB once decoded).

What the models see, whatever the file holds:
- EXIF orientation applied (phone photos come out upright);
- animated images (WebP, APNG) and multi-picture JPEGs: the first frame;
- 16-bit and 32-bit greyscale scaled to 8 bits (not clipped);
- CMYK, palette, greyscale converted to RGB;
- transparency (RGBA, LA, palette + tRNS) composited onto white, so a fully transparent image is
  a blank white image (no face), not the pixels hidden under alpha 0.
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

SUPPORTED_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "MPO"}  # MPO: multi-picture JPEGs from phones
BACKGROUND = (255, 255, 255)  # what shows through transparent pixels
HIGH_BIT_DEPTH_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
# A progressive JPEG is decoded once per scan: libjpeg's encoders write 10 at most, mozjpeg a few
# more; a file repeating one scan 2,500 times took 17x the CPU of the same image with 10.
MAX_JPEG_SCANS = 100
# In entropy-coded data a 0xFF byte is followed by 0x00 (stuffing) or a restart marker; any other
# byte after it (0xFF aside: fill) is the next marker.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD9)}  # TEM, RST0-7, SOI: no length field
# Pillow refuses a PNG whose compressed text chunk (a comment, XMP metadata) inflates past 1 MiB,
# which cameras and editors do write. Any one chunk may inflate to 16 MiB; all of an image's text
# together stays bounded by Pillow's MAX_TEXT_MEMORY (64 MiB), the bound that was already there.
PngImagePlugin.MAX_TEXT_CHUNK = 16 * 2**20


class ImageError(ValueError):
    """A client-side image problem; `code` and `status` map straight onto the HTTP error."""

    def __init__(self, code: str, message: str, status: int = 422):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _to_8_bit(image: Image.Image) -> Image.Image:
    """16-bit (or 32-bit integer) greyscale -> 8-bit "L", scaled over the full range of the type."""
    values = np.asarray(image)
    if image.mode.startswith("I;16") or values.max(initial=0) > 255:
        values = np.clip(values, 0, 65535).astype(np.uint32) // 257  # 65535 -> 255
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in HIGH_BIT_DEPTH_MODES:
        image = _to_8_bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")  # convert() would copy even then


def jpeg_scans(data: bytes) -> int:
    """The scans (SOS segments) of a JPEG's first image, counted by walking its markers: segment
    lengths are skipped, so bytes inside EXIF thumbnails or ICC profiles are never taken for markers."""
    scans, position = 0, 2  # after SOI
    while position + 4 <= len(data):
        if data[position] != 0xFF:  # not at a marker: garbage the decoder will report
            return scans
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
        elif marker in _STANDALONE_MARKERS:
            position += 2
        elif marker == 0xD9:  # EOI: an MPO's further pictures are never decoded
            return scans
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
            if marker == 0xDA:  # SOS: its header, then entropy-coded data up to the next marker
                scans += 1
                following = _NEXT_MARKER.search(data, position)
                if following is None:
                    return scans
                position = following.start()
    return scans


def _check_work(image: Image.Image, data: bytes) -> None:
    """Refuse what would cost far more to decode than its pixels say (the pixel limit bounds memory, not time)."""
    if image.format in ("JPEG", "MPO") and (scans := jpeg_scans(data)) > MAX_JPEG_SCANS:
        raise ImageError(
            "corrupt_image",
            f"the JPEG has {scans} scans; at most {MAX_JPEG_SCANS} are decoded (progressive photos have about 10)",
        )


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(
            "invalid_image", "the data is not an image in a supported format (JPEG, PNG, WebP, BMP)", status=415
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("image_too_large", "the image has too many pixels", status=413) from None
    if image.format not in SUPPORTED_FORMATS:
        raise ImageError(
            "unsupported_image_format", f"{image.format} images are not supported (JPEG, PNG, WebP, BMP)", status=415
        )
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError("corrupt_image", f"the image header gives an empty size ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            "image_too_large",
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
            status=413,
        )
    _check_work(image, data)
    return image


def from_pil(image: Image.Image, max_pixels: int = 40_000_000) -> np.ndarray:
    """An already opened PIL image -> what `decode_image` gives for its file: (H, W, 3) uint8 RGB, upright."""
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            "image_too_large",
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
            status=413,
        )
    if width < 1 or height < 1:
        raise ImageError("corrupt_image", f"the image is empty ({width}x{height})")
    return np.asarray(_to_rgb(ImageOps.exif_transpose(image)), dtype=np.uint8)


def open_image(data: bytes, max_bytes: int = 10 * 2**20, max_pixels: int = 40_000_000) -> Image.Image:
    """The image with its header read and checked, no pixel decoded yet (`image.size` is known)."""
    if not data:
        raise ImageError("empty_image", "the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError("image_too_large", f"the image is {len(data)} bytes; the limit is {max_bytes}", status=413)
    try:
        return _open(data, max_pixels)
    except ImageError:
        raise
    except Exception as error:  # noqa: BLE001 - see to_array
        raise ImageError(
            "corrupt_image", f"the image cannot be read: {type(error).__name__}: {str(error)[:200]}"
        ) from None


def decode_image(data: bytes, max_bytes: int = 10 * 2**20, max_pixels: int = 40_000_000) -> np.ndarray:
    """(H, W, 3) uint8 RGB with the EXIF orientation applied."""
    return to_array(open_image(data, max_bytes, max_pixels))


def to_array(image: Image.Image) -> np.ndarray:
    """The pixels of an image from `open_image`: (H, W, 3) uint8 RGB with the EXIF orientation applied."""
    try:
        image.seek(0)  # animated or multi-picture: the first frame
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # a copy only where the photo must turn
        return np.asarray(_to_rgb(image), dtype=np.uint8)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(
            "image_too_large", "the image does not fit in the memory set aside for decoding", status=413
        ) from None
    except Exception as error:  # noqa: BLE001 - a decoder failing on untrusted bytes is the client's bad input, whatever it raises
        raise ImageError(
            "corrupt_image", f"the image cannot be decoded: {type(error).__name__}: {str(error)[:200]}"
        ) from None
