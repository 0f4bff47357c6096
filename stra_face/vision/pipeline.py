"""One image -> its faces: detect -> align -> embed / expression, written once for every caller.

`analysis` is a generator: it does the CPU work (detector cascade, alignment, crops) itself and
yields a `ModelCall` for each network it needs, receiving that network's output back. Whoever
drives it decides how the networks run:
- `run_sync` calls them in place (the Python API and the CLI);
- the service hands each call to its micro-batcher, which joins the calls of concurrent requests
  (`stra_face.service.analysis`).
Both run the same steps on the same crops, so they give the same numbers (up to the float noise
of a batch of different size).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np

from stra_face.vision.align import align_face, expression_crop
from stra_face.vision.detect import Detection, FaceDetector
from stra_face.vision.guard import can_hold_a_face
from stra_face.vision.preprocess import FaceInput
from stra_face.vision.quality import Quality, QualityGate, assess

RNET, ONET, EMBED, EXPRESSION = "rnet", "onet", "embed", "expression"


@dataclass
class AnalyzedImage:
    width: int
    height: int
    detections: list[Detection]  # the largest `max_faces` of the faces found (that passed the quality gate)
    faces_found: int = 0
    qualities: list[Quality] = field(default_factory=list)  # one per detection
    rejected: list[tuple[Detection, Quality]] = field(default_factory=list)  # found, below the quality gate
    embeddings: np.ndarray | None = None  # (F, D)
    expressions: np.ndarray | None = None  # (F, 7)
    modes: np.ndarray | None = None  # (F, G, h, w) StRA mode maps, when asked for
    expression_crops: np.ndarray | None = (
        None  # (F, 48, 48) the crops the expression model saw, when modes are asked for
    )

    @property
    def truncated(self) -> bool:
        return self.faces_found > len(self.detections)


@dataclass(frozen=True)
class DetectionOptions:
    min_face_size: int | None = None
    threshold: float | None = None
    keep_low_quality: bool = False  # faces below the quality gate are kept (each still says why it failed)


@dataclass(frozen=True)
class Request:
    """What to compute for the faces found (detection alone when nothing is asked)."""

    embed: bool = False
    flip: bool = False  # embeddings of the face and its mirror, summed
    expression: bool = False
    flip_expressions: bool = True  # expression probabilities of the crop and its mirror, averaged
    modes: bool = False


@dataclass(frozen=True)
class ModelCall:
    model: str  # RNET, ONET, EMBED or EXPRESSION
    inputs: np.ndarray
    options: tuple = ()  # extra positional arguments of the model's function


def analysis(
    image: np.ndarray,
    detector: FaceDetector,
    face_input: FaceInput,
    max_faces: int,
    options: DetectionOptions = DetectionOptions(),
    request: Request = Request(),
    gate: QualityGate | None = None,
) -> Generator[ModelCall, object, AnalyzedImage]:
    height, width = image.shape[:2]
    found: list[Detection] = []
    if can_hold_a_face(height, width, detector.smallest_face(height, width, options.min_face_size)):
        cascade = detector.propose(image, options.min_face_size)
        if len(cascade.crops):
            cascade = detector.refine(cascade, (yield ModelCall(RNET, cascade.crops)))
        if len(cascade.crops):
            found = detector.finish(cascade, (yield ModelCall(ONET, cascade.crops)), options.threshold)
    qualities = [assess(image, d, gate or QualityGate()) for d in found]
    accepted = [(d, q) for d, q in zip(found, qualities) if q.passed or options.keep_low_quality]
    rejected = [(d, q) for d, q in zip(found, qualities) if not (q.passed or options.keep_low_quality)]
    result = AnalyzedImage(
        width,
        height,
        [d for d, _ in accepted[:max_faces]],
        len(accepted),
        [q for _, q in accepted[:max_faces]],
        rejected,
    )
    if not result.detections:
        return result
    if request.embed:
        faces = np.stack([align_face(image, d.landmarks, face_input) for d in result.detections])
        result.embeddings = yield ModelCall(EMBED, faces, (request.flip,))
    if request.expression:
        crops = np.stack([expression_crop(image, d.landmarks) for d in result.detections])
        result.expressions, result.modes = yield ModelCall(EXPRESSION, crops, (request.flip_expressions, request.modes))
        if request.modes:
            result.expression_crops = crops
    return result


def low_quality_note(result: AnalyzedImage) -> str:
    """For a no_face error: the faces the quality gate dropped, and why."""
    if not result.rejected:
        return ""
    reasons = sorted({reason for _, quality in result.rejected for reason in quality.reasons})
    return (
        f" that passes the quality gate ({len(result.rejected)} dropped: {', '.join(reasons)}; "
        "keep_low_quality=true keeps them)"
    )


def advance(steps: Generator[ModelCall, object, AnalyzedImage], output: object = None) -> ModelCall | AnalyzedImage:
    """Hand `output` (None to start) to the analysis: the next model call, or the finished result.

    Returned rather than raised as StopIteration, which cannot cross a thread pool's future."""
    try:
        return steps.send(output)
    except StopIteration as done:
        return done.value


def run_sync(steps: Generator[ModelCall, object, AnalyzedImage], models: dict[str, Callable]) -> AnalyzedImage:
    """Drive `analysis` with each network called directly: `models` maps RNET/ONET/EMBED/EXPRESSION to functions."""
    step = advance(steps)
    while isinstance(step, ModelCall):
        step = advance(steps, models[step.model](step.inputs, *step.options))
    return step
