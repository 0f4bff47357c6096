"""Video: `POST /v1/video` (a file: each person a track, named, with an expression timeline) and the
`/v1/stream` WebSocket (JPEG frames in, the faces of each frame and the tracks so far out)."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from stra_face.gallery import GalleryError
from stra_face.service.api.decision import decision
from stra_face.service.api.deps import State
from stra_face.service.errors import APIError
from stra_face.service.schemas import Decision, ErrorResponse
from stra_face.service.state import ServiceState
from stra_face.tracks.analyzer import Identifier, Models, VideoOptions, VideoSession, analyze_file, frame_summary
from stra_face.tracks.source import VideoLimits, probe
from stra_face.vision.decode import ImageError, decode_image
from stra_face.vision.inference import Overloaded

router = APIRouter(prefix="/v1", tags=["video"])
stream_router = APIRouter(prefix="/v1")
ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 413, 415, 422, 503)}
DetectEvery = Annotated[
    int, Query(ge=1, le=300, description="detect faces on every N-th frame and track them in between")
]


class Segment(BaseModel):
    expression: str
    start: float
    end: float
    start_frame: int
    end_frame: int


class VideoTrack(BaseModel):
    id: int
    identity: str = Field(description="the gallery subject's name (its id when it has none), or `unknown`")
    subject_id: str | None
    similarity: float | None = Field(
        description="median cosine of the accepted frames; for unknown, the best seen to anyone"
    )
    start: float
    end: float
    start_frame: int
    end_frame: int
    frames: list[int] = Field(description="frames where the face was detected (the timeline's samples)")
    boxes: list[list[float]]
    expressions: list[list[float]] = Field(
        description="per sample, smoothed probabilities in `expression_labels` order"
    )
    dominant: list[Segment]
    best_frame: int
    thumbnail: str | None = Field(description="base64 JPEG of the best detection, aligned")


class VideoResponse(BaseModel):
    fps: float
    frames: int
    detect_every: int
    expression_labels: list[str]
    tracks: list[VideoTrack]


def video_body() -> dict:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["video"],
                        "properties": {"video": {"type": "string", "format": "binary"}},
                    },
                }
            },
        }
    }


def models_of(state: ServiceState) -> Models:
    if state.expression is None:
        raise APIError(
            503,
            "model_unavailable",
            f"no expression model is installed (expected at {state.settings.expression_model})",
        )
    return Models(state.detector, state.embedder, state.expression, state.calibration)


def options_of(state: ServiceState, detect_every: int) -> VideoOptions:
    return VideoOptions(
        detect_every=detect_every, max_faces=state.settings.max_faces, flip_expressions=state.settings.flip_expressions
    )


async def _spool(request: Request, spooled) -> None:
    """The uploaded video into a named temporary file (OpenCV reads from a path)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "multipart/form-data":
        raise APIError(
            415, "unsupported_media_type", "send multipart/form-data with the video file in the field 'video'"
        )
    form = await request.form(max_files=1, max_fields=8)
    upload = form.get("video")
    if not isinstance(upload, UploadFile):
        raise APIError(422, "missing_video", "multipart field 'video' is missing (expected the video file)")
    await run_in_threadpool(shutil.copyfileobj, upload.file, spooled)
    spooled.flush()


@router.post(
    "/video",
    response_model=VideoResponse,
    responses=ERRORS,
    openapi_extra=video_body(),
    summary="each person in a video as a track: named from the gallery, with an expression timeline",
)
async def video(
    request: Request, state: State, threshold: Annotated[Decision, Depends(decision)], detect_every: DetectEvery = 3
) -> VideoResponse:
    models = models_of(state)
    settings = state.settings
    limits = VideoLimits(max_pixels=settings.max_video_pixels, max_seconds=settings.max_video_seconds)
    identifier = Identifier(state.gallery, state.embedder.sha256, threshold.threshold)
    with tempfile.NamedTemporaryFile(suffix=".video") as spooled:
        await _spool(request, spooled)
        info = await run_in_threadpool(probe, Path(spooled.name), limits)
        # One frame is decoded and detected at a time: that is what the video holds of the pixel budget.
        with state.admission.reserve(state.detector.work_pixels(info.height, info.width)):
            _, result = await run_in_threadpool(
                analyze_file, spooled.name, models, identifier, options_of(state, detect_every), limits
            )
    return VideoResponse(**result)


def _key_error(state: ServiceState, websocket: WebSocket) -> str | None:
    """The API-key rules of the other routes; browsers cannot set headers on a WebSocket, so `?api_key=` works too."""
    keys = state.settings.api_keys
    if not keys:
        return None
    given = websocket.headers.get("x-api-key") or websocket.query_params.get("api_key")
    if given is None:
        return "missing_api_key: this server requires an API key (x-api-key header or ?api_key=)"
    if not any(secrets.compare_digest(given.encode(), key.encode()) for key in keys):
        return "invalid_api_key: the API key is not valid"
    return None


@stream_router.websocket("/stream")
async def stream(
    websocket: WebSocket,
    fps: Annotated[float, Query(gt=0, le=240)] = 10.0,
    detect_every: DetectEvery = 1,
    far: Annotated[float | None, Query(gt=0, lt=1)] = None,
    threshold: Annotated[float | None, Query(ge=-1, le=1)] = None,
) -> None:
    """Binary messages: JPEG (or PNG) frames, in order, `fps` per second. Each is answered with
    {"frame", "time", "faces": [...], "tracks": [...]}, or {"error": {...}} for a frame that cannot
    be read (the stream goes on). The text message "end" is answered with the full result
    (as POST /v1/video's) and closes the stream."""
    state: ServiceState = websocket.app.state.service
    refusal = _key_error(state, websocket)
    if refusal is None:
        try:
            models = models_of(state)
            identifier = Identifier(state.gallery, state.embedder.sha256, decision(state, far, threshold).threshold)
            state.admission.enter()
        except (APIError, Overloaded) as error:
            refusal = f"{getattr(error, 'code', 'overloaded')}: {getattr(error, 'message', error)}"
    if refusal is not None:
        await websocket.close(code=1008 if refusal.split(":")[0].endswith("api_key") else 1013, reason=refusal[:120])
        return
    try:
        await websocket.accept()
        session = VideoSession(models, fps, identifier, options_of(state, detect_every))
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "end":
                await websocket.send_json(await run_in_threadpool(session.result))
                await websocket.close()
                return
            await websocket.send_json(await _answer(state, session, message.get("bytes")))
    except WebSocketDisconnect:
        return
    finally:
        state.admission.leave()


async def _answer(state: ServiceState, session: VideoSession, data: bytes | None) -> dict:
    if data is None:
        return {
            "error": {
                "code": "expected_frame",
                "message": "send frames as binary messages (JPEG or PNG), or the text 'end'",
            }
        }
    try:
        image = await run_in_threadpool(
            decode_image, data, state.settings.max_image_bytes, state.settings.max_image_pixels
        )
        return frame_summary(await run_in_threadpool(session.feed, image), session)
    except (ImageError, GalleryError) as error:
        return {"error": {"code": error.code, "message": error.message}}
