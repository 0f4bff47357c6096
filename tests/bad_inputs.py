"""A generated corpus of hostile and odd request bodies for the image routes.

Each case builds a request for a route's image fields (("image",) or ("image1", "image2")):
`case.request(fields) -> dict` of httpx.Client.request keyword arguments. Image-byte cases go as
multipart files, every third one as base64 JSON instead, so both body parsers see them.
"""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

FORMATS = ("JPEG", "PNG", "WEBP", "BMP")


@dataclass
class Case:
    name: str
    request: Callable[[tuple[str, ...]], dict]


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def picture(size=(96, 80), seed: int = 0) -> Image.Image:
    """A smooth synthetic picture (compresses like a photo, not like noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(cv2.resize(small, size, interpolation=cv2.INTER_CUBIC))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int, bit_depth: int = 8, colour: int = 2) -> bytes:
    """A PNG whose IHDR claims width x height, with a tiny IDAT: bombs and lies in the header."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def png_bomb(width: int, height: int) -> bytes:
    compressor = zlib.compressobj(1)
    row = b"\x00" * (width + 1)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def bmp_header_only(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 16, 0, 0, 54) + info + b"\0" * 16


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """A real JPEG with the SOF0 frame size rewritten (claims a size its scan does not have)."""
    at = data.find(b"\xff\xc0")
    return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]


def with_exif_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif.tobytes())


def png_16_bit(grey: bool, size=(96, 80)) -> bytes:
    base = np.asarray(picture(size)).astype(np.uint16) * 257
    array = base[..., 0] if grey else base[..., ::-1]  # cv2 writes BGR
    ok, encoded = cv2.imencode(".png", array)
    assert ok
    return encoded.tobytes()


def image_cases(photo: bytes | None) -> list[tuple[str, bytes]]:
    """(name, image bytes) for every image-level case."""
    rng = random.Random(0)
    cases: list[tuple[str, bytes]] = []
    base = picture()
    encoded = {fmt: encode(base, fmt) for fmt in FORMATS}
    if photo is not None:
        encoded["photo"] = photo

    # Truncated at many cut points (header, first scan lines, near the end).
    for fmt, data in encoded.items():
        cuts = sorted({*range(1, 64, 3), *(int(len(data) * f) for f in np.linspace(0.02, 0.999, 80))})
        cases += [(f"truncated {fmt} at {cut}/{len(data)}", data[:cut]) for cut in cuts if 0 < cut < len(data)]
    # Corrupt: random bytes flipped, headers overwritten, junk after a valid signature.
    for fmt, data in encoded.items():
        for i in range(60):
            corrupt = bytearray(data)
            for _ in range(1 + i % 8):
                corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
            cases.append((f"corrupt {fmt} #{i}", bytes(corrupt)))
        for start in (2, 8, 12, 16, 24, 40):
            cases.append(
                (f"{fmt} with junk from byte {start}", data[:start] + bytes(rng.randrange(256) for _ in range(200)))
            )
    cases += [
        ("RIFF/WEBP junk", b"RIFF\x10\0\0\0WEBPVP8 " + b"\xff" * 64),
        ("RIFF/WEBP VP8X junk", b"RIFF\x20\0\0\0WEBPVP8X" + b"\x00" * 10 + b"\xff" * 20),
        ("JPEG SOI only", b"\xff\xd8"),
        ("JPEG SOI + EOI", b"\xff\xd8\xff\xd9"),
        ("PNG signature only", b"\x89PNG\r\n\x1a\n"),
        ("BMP magic only", b"BM"),
        ("GIF (unsupported format)", encode(base, "GIF")),
        ("TIFF (unsupported format)", encode(base, "TIFF")),
        ("ICO (unsupported format)", encode(base.resize((32, 32)), "ICO")),
        ("text", b"hello, I am not an image"),
        ("zeros", b"\0" * 4096),
        ("random bytes", bytes(rng.randrange(256) for _ in range(4096))),
        ("html", b"<html><body><img src=x></body></html>"),
    ]
    # Huge and bomb headers: the size in the header is refused before pixels are decoded.
    for width, height in [
        (65535, 65535),
        (2**31 - 1, 1),
        (1, 2**31 - 1),
        (100_000, 100_000),
        (40_000, 1001),
        (0, 10),
        (10, 0),
        (0, 0),
        (2**32 - 1, 2**32 - 1),
    ]:
        for bit_depth, colour in [(8, 2), (16, 0), (1, 0), (8, 6)]:
            cases.append(
                (
                    f"PNG header {width}x{height} depth {bit_depth} colour {colour}",
                    png_header_only(width, height, bit_depth, colour),
                )
            )
        cases.append((f"BMP header {width}x{height}", bmp_header_only(min(width, 2**31 - 1), min(height, 2**31 - 1))))
        cases.append(
            (f"JPEG SOF {width}x{height}", jpeg_with_size(encoded["JPEG"], min(width, 65535), min(height, 65535)))
        )
    cases += [
        ("PNG bomb 20000x20000 (zeros)", png_bomb(20000, 20000)),
        ("PNG bomb 7000x6000 just over 40 MP", png_bomb(7000, 6000)),
    ]
    cases.append(("BMP negative height", bmp_header_only(64, -64)))
    # Tiny images and strips: smaller than any detectable face.
    for width, height in [
        *((s, s) for s in (1, 2, 3, 5, 8, 11, 12, 13, 19, 20, 21)),
        (1, 500),
        (500, 1),
        (40000, 1),
        (1, 40000),
        (12, 4000),
        (4000, 12),
        (19, 1280),
        (3000, 19),
    ]:
        for fmt in ("PNG", "JPEG"):
            if fmt == "JPEG" and max(width, height) > 65500:
                continue
            cases.append((f"tiny {fmt} {width}x{height}", encode(picture((width, height)), fmt)))
    # Bit depths and colour models.
    cases += [(f"16-bit grey PNG {s}", png_16_bit(True, s)) for s in ((96, 80), (20, 20), (500, 12))]
    cases += [(f"16-bit RGB PNG {s}", png_16_bit(False, s)) for s in ((96, 80), (20, 20))]
    cases += [
        ("I;16 PNG from Pillow", encode(Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257), "PNG")),
        ("1-bit PNG", encode(base.convert("1"), "PNG")),
        ("1-bit BMP", encode(base.convert("1"), "BMP")),
        ("grey JPEG", encode(base.convert("L"), "JPEG")),
        ("CMYK JPEG", encode(base.convert("CMYK"), "JPEG")),
        ("CMYK JPEG progressive", encode(base.convert("CMYK"), "JPEG", progressive=True)),
        ("YCbCr JPEG subsampling 4:4:4", encode(base, "JPEG", subsampling=0)),
        ("progressive JPEG", encode(base, "JPEG", progressive=True)),
        ("palette PNG", encode(base.convert("P"), "PNG")),
        ("palette PNG with transparency", encode(base.convert("P"), "PNG", transparency=0)),
        ("palette+alpha PNG", encode(base.convert("RGBA").convert("P"), "PNG", transparency=5)),
        ("palette BMP", encode(base.convert("P"), "BMP")),
        ("LA PNG", encode(base.convert("LA"), "PNG")),
        ("RGBA PNG opaque", encode(base.convert("RGBA"), "PNG")),
        ("RGBA PNG fully transparent", encode(Image.new("RGBA", (96, 80), (200, 100, 50, 0)), "PNG")),
        ("RGBA WebP half transparent", encode(Image.new("RGBA", (96, 80), (200, 100, 50, 128)), "WEBP")),
        ("RGBA BMP", encode(base.convert("RGBA"), "BMP")),
        ("lossless WebP", encode(base, "WEBP", lossless=True)),
    ]
    # Animated: the first frame is used.
    frames = [picture(seed=s) for s in range(3)]
    cases += [
        ("animated WebP", encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100)),
        ("animated PNG (APNG)", encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100)),
        ("animated GIF (unsupported)", encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)),
        ("MPO-like JPEG with two SOIs", encoded["JPEG"] + encoded["JPEG"]),
    ]
    # EXIF orientation, valid and invalid values, and broken EXIF blocks.
    cases += [
        (f"EXIF orientation {o}", with_exif_orientation(base, o)) for o in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 255, 65535)
    ]
    jpeg = encoded["JPEG"]
    cases += [
        ("JPEG with junk APP1 Exif", jpeg[:2] + b"\xff\xe1\x00\x20Exif\x00\x00" + b"\xff" * 26 + jpeg[2:]),
        ("JPEG with truncated APP1 Exif", jpeg[:2] + b"\xff\xe1\xff\xffExif\x00\x00MM" + jpeg[2:]),
        ("JPEG with zero-length segment", jpeg[:2] + b"\xff\xe0\x00\x00" + jpeg[2:]),
    ]
    return cases


def _multipart(data: bytes, fields: tuple[str, ...], content_type: str = "application/octet-stream") -> dict:
    return {"files": {field: (f"{field}.bin", data, content_type) for field in fields}}


def _json(value, fields: tuple[str, ...]) -> dict:
    return {
        "content": json.dumps({field: value for field in fields}).encode(),
        "headers": {"content-type": "application/json"},
    }


def body_cases() -> list[Case]:
    """Cases about the body itself: base64, content types, JSON shape and nesting."""
    valid = base64.b64encode(encode(picture(), "JPEG")).decode()
    cases = [
        Case(f"base64 {name}", lambda fields, v=value: _json(v, fields))
        for name, value in [
            ("not base64", "this is not base64!!"),
            ("padding only", "===="),
            ("one char", "A"),
            ("wrong padding", valid[:-2] + "="),
            ("truncated", valid[: len(valid) // 2]),
            ("non-ascii", "ÿØÿà" * 10),
            ("url-safe alphabet", valid.replace("+", "-").replace("/", "_")),
            ("data URL without comma", "data:image/jpeg;base64"),
            ("data URL of junk", "data:image/png;base64,@@@@"),
            ("empty string", ""),
            ("whitespace", "   \n\t  "),
            ("number", 12345),
            ("float", 1.5),
            ("null", None),
            ("true", True),
            ("list", [valid]),
            ("object", {"data": valid}),
            ("nested list", [[[[valid]]]]),
            ("base64 of text", base64.b64encode(b"hello").decode()),
            ("base64 of zeros", base64.b64encode(b"\0" * 1000).decode()),
            ("huge number", 10**4000),
        ]
    ]
    cases += [
        Case(
            "JSON top-level list",
            lambda fields: {"content": b'["image"]', "headers": {"content-type": "application/json"}},
        ),
        Case(
            "JSON top-level string",
            lambda fields: {"content": b'"image"', "headers": {"content-type": "application/json"}},
        ),
        Case("JSON empty object", lambda fields: {"content": b"{}", "headers": {"content-type": "application/json"}}),
        Case("JSON invalid", lambda fields: {"content": b"{image: x", "headers": {"content-type": "application/json"}}),
        Case("JSON empty body", lambda fields: {"content": b"", "headers": {"content-type": "application/json"}}),
        Case(
            "JSON not UTF-8",
            lambda fields: {"content": b'{"image": "\xff\xfe"}', "headers": {"content-type": "application/json"}},
        ),
        Case(
            "JSON 5000-digit number",
            lambda fields: {
                "content": b'{"image": ' + b"1" * 5000 + b"}",
                "headers": {"content-type": "application/json"},
            },
        ),
        Case(
            "JSON with NaN",
            lambda fields: {"content": b'{"image": NaN}', "headers": {"content-type": "application/json"}},
        ),
        Case(
            "JSON duplicate keys",
            lambda fields: {
                "content": ("{" + ",".join(f'"{f}": "x", "{f}": "{valid}"' for f in fields) + "}").encode(),
                "headers": {"content-type": "application/json"},
            },
        ),
        Case(
            "JSON charset param",
            lambda fields: _json(valid, fields) | {"headers": {"content-type": "application/json; charset=latin-1"}},
        ),
    ]
    for depth in (33, 100, 1000, 100_000):
        cases.append(
            Case(
                f"nested JSON arrays depth {depth}",
                lambda fields, d=depth: {
                    "content": b"[" * d + b"]" * d,
                    "headers": {"content-type": "application/json"},
                },
            )
        )
        cases.append(
            Case(
                f"nested JSON objects depth {depth}",
                lambda fields, d=depth: {
                    "content": b'{"a":' * d + b"1" + b"}" * d,
                    "headers": {"content-type": "application/json"},
                },
            )
        )
        cases.append(
            Case(
                f"nested JSON in the image field depth {depth}",
                lambda fields, d=depth: {
                    "content": b'{"image": ' + b"[" * d + b"]" * d + b"}",
                    "headers": {"content-type": "application/json"},
                },
            )
        )
    cases.append(
        Case(
            "unbalanced JSON 100000 opening brackets",
            lambda fields: {"content": b"[" * 100_000, "headers": {"content-type": "application/json"}},
        )
    )
    cases.append(Case("JSON brackets inside strings (not nesting)", lambda fields: _json("[" * 1000, fields)))
    for content_type in (
        "text/plain",
        "image/jpeg",
        "application/xml",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
        "",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/mixed; boundary=x",
        "application/json-seq",
        "*/*",
    ):
        cases.append(
            Case(
                f"content type {content_type!r}",
                lambda fields, c=content_type: {"content": encode(picture(), "JPEG"), "headers": {"content-type": c}},
            )
        )
    boundary = "b0undary"
    cases += [
        Case(
            "multipart with a wrong boundary",
            lambda fields: {
                "content": b'--other\r\nContent-Disposition: form-data; name="image"\r\n\r\nxx\r\n--other--\r\n',
                "headers": {"content-type": f"multipart/form-data; boundary={boundary}"},
            },
        ),
        Case(
            "multipart truncated",
            lambda fields: {
                "content": (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
                ).encode()
                + encode(picture(), "JPEG")[:100],
                "headers": {"content-type": f"multipart/form-data; boundary={boundary}"},
            },
        ),
        Case(
            "multipart without disposition",
            lambda fields: {
                "content": f"--{boundary}\r\n\r\nxx\r\n--{boundary}--\r\n".encode(),
                "headers": {"content-type": f"multipart/form-data; boundary={boundary}"},
            },
        ),
        Case(
            "multipart with 100 files",
            lambda fields: {"files": [(fields[0], (f"{i}.jpg", b"x", "image/jpeg")) for i in range(100)]},
        ),
        Case(
            "multipart with 100 fields",
            lambda fields: {"data": {f"f{i}": "x" for i in range(100)}, "files": {f: ("a.jpg", b"x") for f in fields}},
        ),
        Case(
            "multipart text field of base64",
            lambda fields: {"data": {f: valid for f in fields}, "files": {"unused": ("u.txt", b"u")}},
        ),
        Case(
            "multipart text field not base64",
            lambda fields: {"data": {f: "not base64 !!" for f in fields}, "files": {"unused": ("u.txt", b"u")}},
        ),
        Case("multipart field missing", lambda fields: {"files": {"other": ("a.jpg", encode(picture(), "JPEG"))}}),
        Case(
            "multipart image as image/gif type",
            lambda fields: _multipart(encode(picture(), "JPEG"), fields, "image/gif"),
        ),
        Case("multipart empty file", lambda fields: _multipart(b"", fields)),
    ]
    return cases


def chunks(data: bytes, size: int):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def chunked_cases(oversize_bytes: int = 300 * 2**20) -> list[Case]:
    """Bodies sent with Transfer-Encoding: chunked (no Content-Length): within and far over the limit
    (300 MB, the size that once raised the server's RSS by 1 GiB before its 413)."""
    valid = base64.b64encode(encode(picture(), "JPEG")).decode()

    def oversize(fields, total=oversize_bytes):
        yield b'{"' + fields[0].encode() + b'": "'
        for _ in range(total // 2**16):
            yield b"A" * 2**16
        yield b'"}'

    return [
        Case(
            "chunked JSON image",
            lambda fields: {
                "content": chunks(_json(valid, fields)["content"], 1000),
                "headers": {"content-type": "application/json"},
            },
        ),
        Case(
            "chunked JSON nested depth 10000",
            lambda fields: {
                "content": chunks(b"[" * 10000 + b"]" * 10000, 999),
                "headers": {"content-type": "application/json"},
            },
        ),
        Case(
            "chunked oversize JSON",
            lambda fields: {"content": oversize(fields), "headers": {"content-type": "application/json"}},
        ),
        Case(
            "chunked oversize octet-stream",
            lambda fields: {"content": oversize(fields), "headers": {"content-type": "application/octet-stream"}},
        ),
    ]


def corpus(photo: bytes | None = None) -> list[Case]:
    cases = []
    for index, (name, data) in enumerate(image_cases(photo)):
        if index % 3 == 2:
            cases.append(
                Case(name + " (base64 JSON)", lambda fields, d=data: _json(base64.b64encode(d).decode(), fields))
            )
        else:
            cases.append(Case(name, lambda fields, d=data: _multipart(d, fields)))
    return cases + body_cases()
