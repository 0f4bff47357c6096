"""Dependencies shared by the routers: the service state, API keys, images from multipart or base64 JSON."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader
from starlette.datastructures import UploadFile

from stra_face.service.analysis import DetectionOptions
from stra_face.service.errors import APIError
from stra_face.service.limits import BASE64_FACTOR
from stra_face.service.state import ServiceState


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


State = Annotated[ServiceState, Depends(get_state)]


api_key_header = APIKeyHeader(
    name="x-api-key",
    auto_error=False,
    description="required on /v1 routes when the server has API keys configured (STRA_API_KEYS)",
)


def require_api_key(x_api_key: Annotated[str | None, Security(api_key_header)] = None) -> None:
    """Declares the x-api-key scheme on a route (OpenAPI); `ApiKeyMiddleware` enforces it on the
    routes that declare it, before the body is read (dependencies run after FastAPI reads it)."""


async def admitted(state: State):
    """Image routes: admitted into the pipeline or refused (503) before the body is read."""
    state.admission.enter()
    try:
        yield
    finally:
        state.admission.leave()


def detection_options(
    min_face_size: Annotated[
        int | None,
        Query(
            ge=8,
            le=4096,
            description=(
                "smallest face side in original pixels (absent: the server default, "
                "raised on large images to what its detection size sees)"
            ),
        ),
    ] = None,
    detection_threshold: Annotated[float | None, Query(ge=0.0, le=1.0, description="minimum detector score")] = None,
    keep_low_quality: Annotated[
        bool,
        Query(description="keep faces below the quality gate (dropped by default; each face's `quality` says why)"),
    ] = False,
) -> DetectionOptions:
    return DetectionOptions(min_face_size, detection_threshold, keep_low_quality)


_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]*")


def _decode_base64(value, field: str) -> bytes:
    if not isinstance(value, str):
        raise APIError(422, "invalid_base64", f"{field}: expected a base64 string, got {type(value).__name__}")
    if value[:5].lower() == "data:":  # data URL: data:image/jpeg;base64,.... (the scheme is case-insensitive)
        value = value.partition(",")[2]
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise APIError(422, "invalid_base64", f"{field}: not valid base64") from None


def _text_field_image(value: str, field: str) -> bytes:
    """A multipart text field: base64 (or a data URL), or the image's own bytes sent without a filename
    (`curl -F 'image=<photo.jpg'`), which Starlette decodes as latin-1 since images are never UTF-8."""
    if value[:5].lower() == "data:" or _BASE64_TEXT.fullmatch(value):
        return _decode_base64(value, field)
    try:
        return value.encode("latin-1")  # latin-1 maps bytes to characters one to one: the original bytes
    except UnicodeEncodeError:  # valid UTF-8 text: not an image, and not base64 either
        raise APIError(422, "invalid_base64", f"{field}: not valid base64 and not an image file") from None


async def read_images(request: Request, fields: tuple[str, ...], max_bytes: int) -> dict[str, bytes]:
    """The named images of a multipart form (files, or base64 text fields) or a JSON object of base64 strings.

    The body's size and JSON nesting are already bounded by `RequestGuardMiddleware`."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    images: dict[str, bytes] = {}
    if content_type == "multipart/form-data":
        # A part may hold a whole image as base64 text (Starlette's default part limit is 1 MiB).
        form = await request.form(
            max_files=len(fields) + 2, max_fields=32, max_part_size=int(max_bytes * BASE64_FACTOR) + 1024
        )
        for field in fields:
            value = form.get(field)
            if value is None:
                raise APIError(422, "missing_image", f"multipart field {field!r} is missing (expected the image file)")
            images[field] = await value.read() if isinstance(value, UploadFile) else _text_field_image(value, field)
    elif content_type == "application/json":
        try:
            body = json.loads(await request.body())
        except ValueError:  # not JSON, or a number of over 4300 digits
            raise APIError(400, "invalid_json", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise APIError(
                422,
                "validation_error",
                "the JSON body must be an object like {" + ", ".join(f'"{f}": "<base64>"' for f in fields) + "}",
            )
        for field in fields:
            if field not in body:
                raise APIError(
                    422, "missing_image", f"JSON field {field!r} is missing (expected a base64-encoded image)"
                )
            images[field] = _decode_base64(body[field], field)
    else:
        raise APIError(
            415,
            "unsupported_media_type",
            "send multipart/form-data with image file(s), or application/json with base64 image(s)",
        )
    return images


def image_body(*fields: str) -> dict:
    """OpenAPI description of a body that is either multipart files or JSON base64 strings."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": list(fields),
                        "properties": {f: {"type": "string", "format": "binary"} for f in fields},
                    }
                },
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": list(fields),
                        "properties": {
                            f: {
                                "type": "string",
                                "format": "byte",
                                "description": "base64 image (a data: URL is accepted)",
                            }
                            for f in fields
                        },
                    }
                },
            },
        }
    }
