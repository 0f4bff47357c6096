"""Single-image routes: detect, embed, expression, analyze."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request

from stra_face.service.analysis import AnalyzedImage, DetectionOptions, analyze_image
from stra_face.service.api.deps import State, detection_options, image_body, read_images
from stra_face.service.modes import face_modes
from stra_face.service.schemas import (
    AnalyzedFace,
    AnalyzeResponse,
    Box,
    DetectedFace,
    DetectResponse,
    EmbeddedFace,
    EmbedResponse,
    ErrorResponse,
    Expression,
    ExpressionFace,
    ExpressionResponse,
    FaceQuality,
    ImageSize,
)
from stra_face.vision.detect import Detection
from stra_face.vision.preprocess import EXPRESSIONS
from stra_face.vision.quality import Quality

router = APIRouter(prefix="/v1", tags=["faces"])
ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 413, 415, 422, 503)}
Options = Annotated[DetectionOptions, Depends(detection_options)]
Flip = Annotated[bool | None, Query(description="also embed the mirrored face and sum (server default when absent)")]
Modes = Annotated[
    bool,
    Query(
        description=(
            "per face, the StRA mode maps of the expression model (`modes`); "
            "422 modes_unavailable for a model without them"
        )
    ),
]
ModesOverlay = Annotated[
    bool, Query(description="also a base64 PNG of the maps over the 48x48 crop (`modes.overlay_png`); implies modes")
]


def detected(detection: Detection, quality: Quality) -> dict:
    x1, y1, x2, y2 = (float(v) for v in detection.box)
    return {
        "box": Box(x1=x1, y1=y1, x2=x2, y2=y2),
        "score": detection.score,
        "landmarks": [(float(x), float(y)) for x, y in detection.landmarks],
        "quality": FaceQuality(passed=quality.passed, reasons=quality.reasons, measures=quality.measures),
    }


def expression_of(probabilities: np.ndarray) -> Expression:
    return Expression(
        dominant=EXPRESSIONS[int(np.argmax(probabilities))],
        probabilities={n: float(p) for n, p in zip(EXPRESSIONS, probabilities)},
    )


def modes_of(result: AnalyzedImage, overlay: bool) -> list:
    """Per face: its ExpressionModes, or None when modes were not asked for."""
    if result.modes is None:
        return [None] * len(result.detections)
    return [face_modes(maps, crop, overlay) for maps, crop in zip(result.modes, result.expression_crops)]


def size_of(result: AnalyzedImage) -> ImageSize:
    return ImageSize(width=result.width, height=result.height)


def counted(result: AnalyzedImage) -> dict:
    """The FaceCount fields: how many faces were found, and whether STRA_MAX_FACES cut the list."""
    return {
        "faces_found": result.faces_found,
        "truncated": result.faces_found > len(result.detections),
        "low_quality": len(result.rejected),
    }


async def _one_image(request: Request, state) -> bytes:
    return (await read_images(request, ("image",), state.settings.max_image_bytes))["image"]


@router.post(
    "/detect",
    response_model=DetectResponse,
    responses=ERRORS,
    openapi_extra=image_body("image"),
    summary="every face: box, score, 5 landmarks",
)
async def detect(request: Request, state: State, options: Options) -> DetectResponse:
    result = await analyze_image(state, await _one_image(request, state), options)
    return DetectResponse(
        **counted(result),
        image=size_of(result),
        faces=[DetectedFace(**detected(d, q)) for d, q in zip(result.detections, result.qualities)],
        rejected=[DetectedFace(**detected(d, q)) for d, q in result.rejected],
    )


@router.post(
    "/embed",
    response_model=EmbedResponse,
    responses=ERRORS,
    openapi_extra=image_body("image"),
    summary="every face: L2-normalised embedding",
)
async def embed(request: Request, state: State, options: Options, flip: Flip = None) -> EmbedResponse:
    flip = state.settings.flip_embeddings if flip is None else flip
    result = await analyze_image(state, await _one_image(request, state), options, embed=True, flip=flip)
    faces = [
        EmbeddedFace(**detected(d, q), embedding=e.tolist())
        for d, q, e in zip(result.detections, result.qualities, result.embeddings if result.detections else [])
    ]
    return EmbedResponse(**counted(result), image=size_of(result), model_sha256=state.embedder.sha256, faces=faces)


@router.post(
    "/expression",
    response_model=ExpressionResponse,
    responses=ERRORS,
    openapi_extra=image_body("image"),
    summary="every face: 7-class expression probabilities",
)
async def expression(
    request: Request, state: State, options: Options, modes: Modes = False, modes_overlay: ModesOverlay = False
) -> ExpressionResponse:
    result = await analyze_image(
        state, await _one_image(request, state), options, expression=True, modes=modes or modes_overlay
    )
    faces = [
        ExpressionFace(**detected(d, q), expression=expression_of(p), modes=m)
        for d, q, p, m in zip(
            result.detections,
            result.qualities,
            result.expressions if result.detections else [],
            modes_of(result, modes_overlay),
        )
    ]
    return ExpressionResponse(**counted(result), image=size_of(result), faces=faces)


@router.post(
    "/analyze",
    response_model=AnalyzeResponse,
    responses=ERRORS,
    openapi_extra=image_body("image"),
    summary="every face: embedding and expression from one detection pass",
)
async def analyze(
    request: Request,
    state: State,
    options: Options,
    flip: Flip = None,
    modes: Modes = False,
    modes_overlay: ModesOverlay = False,
) -> AnalyzeResponse:
    flip = state.settings.flip_embeddings if flip is None else flip
    result = await analyze_image(
        state,
        await _one_image(request, state),
        options,
        embed=True,
        flip=flip,
        expression=True,
        modes=modes or modes_overlay,
    )
    faces = [
        AnalyzedFace(**detected(d, q), embedding=e.tolist(), expression=expression_of(p), modes=m)
        for d, q, e, p, m in zip(
            result.detections,
            result.qualities,
            result.embeddings if result.detections else [],
            result.expressions if result.detections else [],
            modes_of(result, modes_overlay),
        )
    ]
    return AnalyzeResponse(**counted(result), image=size_of(result), model_sha256=state.embedder.sha256, faces=faces)
