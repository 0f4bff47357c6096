"""Image bytes -> detected faces -> embeddings / expressions: the path every route shares.

The steps are `stra_face.vision.pipeline.analysis`, the ones the Python API runs; here each
network call goes to a micro-batcher shared by concurrent requests, and the CPU work between
them runs in the thread pool."""

from __future__ import annotations

import asyncio

from PIL import Image
from starlette.concurrency import run_in_threadpool

from stra_face.service.errors import APIError
from stra_face.service.state import ServiceState
from stra_face.vision.decode import open_image, to_array
from stra_face.vision.pipeline import (
    EMBED,
    EXPRESSION,
    ONET,
    RNET,
    AnalyzedImage,
    DetectionOptions,
    ModelCall,
    Request,
    advance,
    analysis,
)

__all__ = ["AnalyzedImage", "DetectionOptions", "analyze_image", "analyze_images"]


def _open(state: ServiceState, data: bytes) -> Image.Image:
    return open_image(data, state.settings.max_image_bytes, state.settings.max_image_pixels)


def _start(state: ServiceState, opened: Image.Image, options: DetectionOptions, request: Request):
    steps = analysis(
        to_array(opened),
        state.detector,
        state.embedder.input_kind,
        state.settings.max_faces,
        options,
        request,
        state.quality_gate,
    )
    return steps, advance(steps)


async def analyze_image(state: ServiceState, data: bytes, options: DetectionOptions, **wanted: bool) -> AnalyzedImage:
    """One image's faces and what `wanted` asks for (embed, flip, expression, modes)."""
    return (await analyze_images(state, [data], options, **wanted))[0]


async def analyze_images(
    state: ServiceState,
    images: list[bytes],
    options: DetectionOptions,
    *,
    embed: bool = False,
    flip: bool = False,
    expression: bool = False,
    modes: bool = False,
) -> list[AnalyzedImage]:
    """The images of one request, analysed concurrently once admitted together against the pixel
    budget (`Admission.reserve`): their headers are read first, no pixel is decoded before."""
    if expression and state.expression is None:
        raise APIError(
            503,
            "model_unavailable",
            f"no expression model is installed (expected at {state.settings.expression_model})",
        )
    if modes and not state.expression.has_modes:  # refused before any work is done
        raise APIError(
            422,
            "modes_unavailable",
            f"the installed expression model ({state.expression.path.name}, sha256 {state.expression.sha256[:12]}) "
            "has no StRA mode output; "
            "modes=true needs an StRA model exported by `python -m stra_face.training.fer ship`",
        )
    # The batcher of each model only groups calls with equal options, so requests without modes never pay for them.
    batchers = {
        RNET: state.rnet_batcher,
        ONET: state.onet_batcher,
        EMBED: state.embed_batcher,
        EXPRESSION: state.expression_batcher,
    }
    request = Request(
        embed=embed, flip=flip, expression=expression, flip_expressions=state.settings.flip_expressions, modes=modes
    )
    opened = await run_in_threadpool(lambda: [_open(state, data) for data in images])
    pixels = sum(state.detector.work_pixels(image.height, image.width, options.min_face_size) for image in opened)
    with state.admission.reserve(pixels):
        # Every image's work ends before the budget is given back, even when another one fails.
        results = await asyncio.gather(
            *(_analyze(state, image, options, request, batchers) for image in opened), return_exceptions=True
        )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def _analyze(
    state: ServiceState, opened: Image.Image, options: DetectionOptions, request: Request, batchers: dict
) -> AnalyzedImage:
    steps, step = await run_in_threadpool(_start, state, opened, options, request)
    while isinstance(step, ModelCall):
        step = await run_in_threadpool(advance, steps, await batchers[step.model].submit(step.inputs, *step.options))
    state.metrics.faces.inc(len(step.detections))
    return step
