"""Image bytes -> detected faces -> embeddings / expressions: the path every route shares.

The steps are `stra_face.vision.pipeline.analysis`, the ones the Python API runs; here each
network call goes to a micro-batcher shared by concurrent requests, and the CPU work between
them runs in the thread pool."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from stra_face.service.errors import APIError
from stra_face.service.state import ServiceState
from stra_face.vision.decode import decode_image
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

__all__ = ["AnalyzedImage", "DetectionOptions", "analyze_image"]


def _start(state: ServiceState, data: bytes, options: DetectionOptions, request: Request):
    settings = state.settings
    image = decode_image(data, settings.max_image_bytes, settings.max_image_pixels)
    steps = analysis(image, state.detector, state.embedder.input_kind, settings.max_faces, options, request)
    return steps, advance(steps)


async def analyze_image(
    state: ServiceState, data: bytes, options: DetectionOptions, *, embed: bool = False, flip: bool = False, expression: bool = False, modes: bool = False,
) -> AnalyzedImage:
    if expression and state.expression is None:
        raise APIError(503, "model_unavailable", f"no expression model is installed (expected at {state.settings.expression_model})")
    if modes and not state.expression.has_modes:  # refused before any work is done
        raise APIError(422, "modes_unavailable", f"the installed expression model ({state.expression.path.name}, sha256 {state.expression.sha256[:12]}) has no StRA mode output; modes=true needs an StRA model exported by `python -m stra_face.training.fer ship`")
    # The batcher of each model only groups calls with equal options, so requests without modes never pay for them.
    batchers = {RNET: state.rnet_batcher, ONET: state.onet_batcher, EMBED: state.embed_batcher, EXPRESSION: state.expression_batcher}
    request = Request(embed=embed, flip=flip, expression=expression, flip_expressions=state.settings.flip_expressions, modes=modes)
    steps, step = await run_in_threadpool(_start, state, data, options, request)
    while isinstance(step, ModelCall):
        step = await run_in_threadpool(advance, steps, await batchers[step.model].submit(step.inputs, *step.options))
    state.metrics.faces.inc(len(step.detections))
    return step
