"""Bounds on what one request may cost: body size per route, subject metadata, admission of image work."""
from __future__ import annotations

import json
from collections.abc import Callable

from fastapi import FastAPI
from starlette.types import Scope

from stra_face.service.openapi import operations_for
from stra_face.service.settings import Settings
from stra_face.vision.inference import Overloaded

# base64 inflates by 4/3 (plus line breaks); multipart and JSON framing add a little.
BASE64_FACTOR = 1.4
FRAMING_BYTES = 64 * 1024


def _multipart_fields(operation: dict) -> list[str]:
    content = (operation.get("requestBody") or {}).get("content") or {}
    return content.get("multipart/form-data", {}).get("schema", {}).get("required", [])


def image_fields(operation: dict) -> int:
    """How many images (or videos) an operation's body carries (from its documented multipart body), 0 for other operations."""
    return len(_multipart_fields(operation))


def largest_body(settings: Settings) -> int:
    """The most any route accepts: two images as base64 (verify)."""
    return int(2 * settings.max_image_bytes * BASE64_FACTOR) + FRAMING_BYTES


def body_limit(app: FastAPI, settings: Settings) -> Callable[[Scope], int]:
    """limit_for(scope) -> bytes: image routes allow their images (base64 included), the video route its video, the rest a small JSON body."""

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
    """At most `limit` image requests in the pipeline (decode, detection, models) at once.

    A request is admitted or refused (503, Retry-After) before its body is read and before
    detection, so overload is shed at once instead of after seconds of work. With the limit
    below `batch_queue_size / max_faces`, the model queues behind it never fill.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.active = 0

    def enter(self) -> None:
        if self.active >= self.limit:
            raise Overloaded(f"{self.active} image requests are in progress, the most this server takes at once; retry later")
        self.active += 1

    def leave(self) -> None:
        self.active -= 1
