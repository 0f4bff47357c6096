"""Bounds on what one request may cost: body size per route, subject metadata, admission of image work."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi import FastAPI
from starlette.types import Scope

from stra_face.service.openapi import operations_for
from stra_face.service.settings import Settings
from stra_face.vision.decode import ImageError
from stra_face.vision.inference import Overloaded

# base64 inflates by 4/3 (plus line breaks); multipart and JSON framing add a little.
BASE64_FACTOR = 1.4
FRAMING_BYTES = 64 * 1024


def _multipart_fields(operation: dict) -> list[str]:
    content = (operation.get("requestBody") or {}).get("content") or {}
    return content.get("multipart/form-data", {}).get("schema", {}).get("required", [])


def image_fields(operation: dict) -> int:
    """How many images (or videos) an operation's body carries (from its documented multipart body), 0 for other
    operations."""
    return len(_multipart_fields(operation))


def largest_body(settings: Settings) -> int:
    """The most any route accepts: two images as base64 (verify)."""
    return int(2 * settings.max_image_bytes * BASE64_FACTOR) + FRAMING_BYTES


def body_limit(app: FastAPI, settings: Settings) -> Callable[[Scope], int]:
    """limit_for(scope) -> bytes: image routes allow their images (base64 included), the video route its video, the
    rest a small JSON body."""

    def limit_for(scope: Scope) -> int:
        operation = (operations_for(app, scope["path"]) or {}).get(scope["method"])
        fields = image_fields(operation) if operation else 0
        if fields and "video" in _multipart_fields(operation):
            return settings.max_video_bytes + FRAMING_BYTES
        if fields:
            return int(fields * settings.max_image_bytes * BASE64_FACTOR) + FRAMING_BYTES
        return settings.max_json_body_bytes

    return limit_for


def json_depth_of(value, depth: int = 0) -> int:
    """Nesting depth of parsed JSON (already bounded by the request guard, so recursion is safe)."""
    if isinstance(value, dict):
        return max((json_depth_of(v, depth + 1) for v in value.values()), default=depth + 1)
    if isinstance(value, list):
        return max((json_depth_of(v, depth + 1) for v in value), default=depth + 1)
    return depth


def check_metadata(metadata: dict, max_bytes: int, max_depth: int) -> dict:
    size = len(json.dumps(metadata, separators=(",", ":")).encode())  # storable JSON: checked by SubjectCreate
    if size > max_bytes:
        raise ValueError(f"metadata is {size} bytes as JSON; at most {max_bytes} are stored")
    depth = json_depth_of(metadata)
    if depth > max_depth:
        raise ValueError(f"metadata is nested {depth} levels deep; at most {max_depth}")
    return metadata


class Admission:
    """At most `limit` image requests in the pipeline (decode, detection, models) at once, and at
    most `max_pixels` pixels of work among them (`FaceDetector.work_pixels`: what decoding and
    detecting costs in memory, counted in image pixels).

    A request is admitted or refused (503, Retry-After) before its body is read, then its images are
    admitted against the pixel budget once their headers are read, before any pixel is decoded, so
    overload is shed at once instead of after seconds of work. With the limit below
    `batch_queue_size / max_faces`, the model queues behind it never fill.
    """

    def __init__(self, limit: int, max_pixels: int):
        self.limit = limit
        self.active = 0
        self.max_pixels = max_pixels
        self.pixels = 0  # in flight

    @contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        """Hold `pixels` of the budget for the block; 413 for what could never fit, 503 while others hold too much."""
        if pixels > self.max_pixels:
            raise ImageError(
                "image_too_large",
                f"detecting faces here needs {pixels} pixels of work (image + 4x P-Net's first pyramid level); "
                f"this server takes at most {self.max_pixels} at once; a larger min_face_size needs less",
                status=413,
            )
        if self.pixels + pixels > self.max_pixels:
            raise Overloaded(
                f"{self.pixels} pixels of image work are in progress and this request needs {pixels}; "
                f"the server takes {self.max_pixels} at once; retry later"
            )
        self.pixels += pixels
        try:
            yield
        finally:
            self.pixels -= pixels

    def enter(self) -> None:
        if self.active >= self.limit:
            raise Overloaded(
                f"{self.active} image requests are in progress, the most this server takes at once; retry later"
            )
        self.active += 1

    def leave(self) -> None:
        self.active -= 1
