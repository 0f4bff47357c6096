"""Image bytes -> detected faces -> embeddings / expressions: the path every route shares."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from PIL import Image
from starlette.concurrency import run_in_threadpool

from stra_face.service.errors import APIError
from stra_face.vision.align import align_face, expression_crop
from stra_face.vision.decode import open_image, to_array
from stra_face.vision.detect import Detection
from stra_face.vision.guard import can_hold_a_face
from stra_face.service.state import ServiceState


@dataclass
class AnalyzedImage:
    width: int
    height: int
    detections: list[Detection]  # the largest STRA_MAX_FACES of the faces found
    faces_found: int = 0
    embeddings: np.ndarray | None = None  # (F, D)
    expressions: np.ndarray | None = None  # (F, 7)
    modes: np.ndarray | None = None  # (F, G, h, w) StRA mode maps, when asked for
    expression_crops: np.ndarray | None = None  # (F, 48, 48) the crops the expression model saw, when modes are asked for


@dataclass(frozen=True)
class DetectionOptions:
    min_face_size: int | None = None
    threshold: float | None = None


def _decode_and_propose(state: ServiceState, opened: Image.Image, options: DetectionOptions):
    image = to_array(opened)
    height, width = image.shape[:2]
    if not can_hold_a_face(height, width, state.detector.smallest_face(height, width, options.min_face_size)):
        return image, None
    return image, state.detector.propose(image, options.min_face_size)


def _open(state: ServiceState, data: bytes) -> Image.Image:
    return open_image(data, state.settings.max_image_bytes, state.settings.max_image_pixels)


async def _decode_and_detect(state: ServiceState, opened: Image.Image, options: DetectionOptions) -> tuple[np.ndarray, list[Detection]]:
    """`FaceDetector.detect` in its three steps, the R-Net and O-Net crops batched with those of concurrent requests."""
    image, cascade = await run_in_threadpool(_decode_and_propose, state, opened, options)
    if cascade is None:  # too small to hold a face of the requested size
        return image, []
    if len(cascade.crops):
        cascade = await run_in_threadpool(state.detector.refine, cascade, await state.rnet_batcher.submit(cascade.crops))
    if not len(cascade.crops):
        return image, []
    return image, state.detector.finish(cascade, await state.onet_batcher.submit(cascade.crops), options.threshold)


async def analyze_image(state: ServiceState, data: bytes, options: DetectionOptions, **wanted: bool) -> AnalyzedImage:
    """One image's faces and what `wanted` asks for (embed, flip, expression, modes)."""
    return (await analyze_images(state, [data], options, **wanted))[0]


async def analyze_images(
    state: ServiceState, images: list[bytes], options: DetectionOptions, *, embed: bool = False, flip: bool = False, expression: bool = False, modes: bool = False,
) -> list[AnalyzedImage]:
    """The images of one request, analysed concurrently once admitted together against the pixel
    budget (`Admission.reserve`): their headers are read first, no pixel is decoded before."""
    if expression and state.expression is None:
        raise APIError(503, "model_unavailable", f"no expression model is installed (expected at {state.settings.expression_model})")
    if modes and not state.expression.has_modes:  # refused before any work is done
        raise APIError(422, "modes_unavailable", f"the installed expression model ({state.expression.path.name}, sha256 {state.expression.sha256[:12]}) has no StRA mode output; modes=true needs an StRA model exported by `python -m stra_face.training.fer ship`")
    opened = await run_in_threadpool(lambda: [_open(state, data) for data in images])
    pixels = sum(state.detector.work_pixels(image.height, image.width, options.min_face_size) for image in opened)
    with state.admission.reserve(pixels):
        # Every image's work ends before the budget is given back, even when another one fails.
        results = await asyncio.gather(*(_analyze(state, image, options, embed, flip, expression, modes) for image in opened), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def _analyze(state: ServiceState, opened: Image.Image, options: DetectionOptions, embed: bool, flip: bool, expression: bool, modes: bool) -> AnalyzedImage:
    image, found = await _decode_and_detect(state, opened, options)
    detections = found[: state.settings.max_faces]
    state.metrics.faces.inc(len(detections))
    result = AnalyzedImage(image.shape[1], image.shape[0], detections, len(found))
    if not detections:
        return result
    if embed:
        faces = await run_in_threadpool(lambda: np.stack([align_face(image, d.landmarks, state.embedder.input_kind) for d in detections]))
        result.embeddings = await state.embed_batcher.submit(faces, flip)
    if expression:
        crops = await run_in_threadpool(lambda: np.stack([expression_crop(image, d.landmarks) for d in detections]))
        # The batcher only groups requests with equal options, so requests without modes never pay for them.
        result.expressions, result.modes = await state.expression_batcher.submit(crops, state.settings.flip_expressions, modes)
        if modes:
            result.expression_crops = crops
    return result
