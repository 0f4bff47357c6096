"""The Python API: the REST service's pipeline and answers, in process, without a server.

`FaceAnalyzer` loads the detector, embedding and expression models once (from the same STRA_*
settings and defaults as `stra-face serve`) and runs `stra_face.vision.pipeline.analysis`, the
steps the service runs. Its methods answer plain dicts with the keys of the REST JSON
(`detect` ~ POST /v1/detect, `verify` ~ POST /v1/verify, ...), so code moves between the two.

Images are a path, bytes (an encoded file), a numpy array (H, W, 3) RGB uint8 or a PIL image.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Union

import numpy as np

from stra_face.bundle import load_expression_model, load_face_models
from stra_face.config import PipelineSettings
from stra_face.vision.decode import ImageError, decode_image, from_pil
from stra_face.vision.detect import Detection
from stra_face.vision.inference import ExpressionModel, ModesUnavailable
from stra_face.vision.pipeline import (
    EMBED,
    EXPRESSION,
    ONET,
    RNET,
    AnalyzedImage,
    DetectionOptions,
    Request,
    analysis,
    low_quality_note,
    run_sync,
)
from stra_face.vision.preprocess import EXPRESSIONS
from stra_face.vision.quality import Quality
from stra_face.vision.thresholds import Choice, choose_threshold

ImageInput = Union[str, os.PathLike, bytes, np.ndarray, "PIL.Image.Image"]  # noqa: F821 - PIL is imported only when used


class ModelUnavailable(RuntimeError):
    """An optional model (the expression model) is not installed."""


def load_image(image: ImageInput, max_bytes: int = 10 * 2**20, max_pixels: int = 40_000_000) -> np.ndarray:
    """Any accepted image -> (H, W, 3) uint8 RGB, upright; files and bytes go through the service's decoder."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"no such image file: {path}")
        try:
            return decode_image(path.read_bytes(), max_bytes, max_pixels)
        except ImageError as error:  # say which file
            raise ImageError(error.code, f"{path}: {error.message}", error.status) from None
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image), max_bytes, max_pixels)
    if isinstance(image, np.ndarray):
        return _rgb_array(image, max_pixels)
    from PIL import Image

    if isinstance(image, Image.Image):
        return from_pil(image, max_pixels)
    raise TypeError(f"an image is a path, bytes, a numpy array or a PIL image, not {type(image).__name__}")


def _rgb_array(image: np.ndarray, max_pixels: int) -> np.ndarray:
    if image.dtype != np.uint8 or not (image.ndim == 3 and image.shape[2] == 3 or image.ndim == 2):
        raise ImageError(
            "invalid_image",
            f"an image array must be (H, W, 3) RGB or (H, W) grey uint8, not {image.shape} {image.dtype}",
        )
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ImageError(
            "image_too_large",
            f"the image has {image.shape[0] * image.shape[1]} pixels; the limit is {max_pixels}",
            status=413,
        )
    return np.ascontiguousarray(np.stack([image] * 3, axis=2) if image.ndim == 2 else image)


# ------------------------------------------------------------------ answers shaped like the REST JSON


def detected(detection: Detection, quality: Quality) -> dict:
    x1, y1, x2, y2 = (float(v) for v in detection.box)
    return {
        "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
        "score": detection.score,
        "landmarks": [[float(x), float(y)] for x, y in detection.landmarks],
        "quality": {"passed": quality.passed, "reasons": list(quality.reasons), "measures": dict(quality.measures)},
    }


def faces_of(result: AnalyzedImage) -> list[dict]:
    """The `detected` dict of every face kept."""
    return [detected(d, q) for d, q in zip(result.detections, result.qualities)]


def expression_of(probabilities: np.ndarray) -> dict:
    return {
        "dominant": EXPRESSIONS[int(np.argmax(probabilities))],
        "probabilities": {n: float(p) for n, p in zip(EXPRESSIONS, probabilities)},
    }


def counted(result: AnalyzedImage) -> dict:
    return {"faces_found": result.faces_found, "truncated": result.truncated, "low_quality": len(result.rejected)}


def decision_of(choice: Choice) -> dict:
    return asdict(choice)


def _modes_of(result: AnalyzedImage, overlay: bool) -> list[dict | None]:
    if result.modes is None:
        return [None] * len(result.detections)
    from stra_face.service.modes import face_modes  # pydantic + OpenCV only; its schema defines the REST `modes`

    return [
        face_modes(maps, crop, overlay).model_dump(mode="json")
        for maps, crop in zip(result.modes, result.expression_crops)
    ]


def _with_modes(face: dict, modes: dict | None) -> dict:
    return face if modes is None else face | {"modes": modes}


class FaceAnalyzer:
    """Detector + embedding + expression models and the verification thresholds, loaded once.

    Settings: a `PipelineSettings`, or its fields as keyword arguments (e.g. `providers=
    ["CPUExecutionProvider"]`, `embedding_model=...`); unset ones come from STRA_* variables or
    the defaults, as for the service. Thread-safe (ONNX Runtime sessions are)."""

    def __init__(self, settings: PipelineSettings | None = None, **overrides: Any):
        # Validated again, so that overrides get their types (a str path becomes a Path).
        self.settings = PipelineSettings(**(settings.model_dump() if settings else {}) | overrides)
        models = load_face_models(self.settings, expression=False)
        self.providers, self.detector, self.embedder, self.calibration = (
            models.providers,
            models.detector,
            models.embedder,
            models.calibration,
        )
        self.quality_gate = models.quality_gate  # STRA_QUALITY_*: the gate the service applies
        self._models = {RNET: self.detector.run_rnet, ONET: self.detector.run_onet, EMBED: self.embedder.embed}

    @functools.cached_property
    def expression_model(self) -> ExpressionModel | None:
        """Loaded on first use (the largest model): verification and identification never wait for it."""
        return load_expression_model(self.settings, self.providers)

    @property
    def model_sha256(self) -> str:
        return self.embedder.sha256

    def load(self, image: ImageInput) -> np.ndarray:
        return load_image(image, self.settings.max_image_bytes, self.settings.max_image_pixels)

    def run(
        self,
        image: ImageInput,
        *,
        embed: bool = False,
        flip: bool | None = None,
        expression: bool = False,
        modes: bool = False,
        min_face_size: int | None = None,
        detection_threshold: float | None = None,
    ) -> AnalyzedImage:
        """The pipeline's raw result (numpy arrays): what every other method formats."""
        if (expression or modes) and self.expression_model is None:
            raise ModelUnavailable(f"no expression model is installed (expected at {self.settings.expression_model})")
        if modes and not self.expression_model.has_modes:
            raise ModesUnavailable(f"the expression model {self.expression_model.path.name} has no StRA mode output")
        request = Request(
            embed=embed,
            flip=self.settings.flip_embeddings if flip is None else flip,
            expression=expression or modes,
            flip_expressions=self.settings.flip_expressions,
            modes=modes,
        )
        steps = analysis(
            self.load(image),
            self.detector,
            self.embedder.input_kind,
            self.settings.max_faces,
            DetectionOptions(min_face_size, detection_threshold),
            request,
            self.quality_gate,
        )
        return run_sync(
            steps, self._models | ({EXPRESSION: self.expression_model.predict} if request.expression else {})
        )

    def detect(self, image: ImageInput, **options: Any) -> dict:
        """~ POST /v1/detect: every face's box, score and 5 landmarks, largest first."""
        result = self.run(image, **options)
        return counted(result) | {
            "image": _size(result),
            "faces": faces_of(result),
            "rejected": [detected(d, q) for d, q in result.rejected],
        }

    def embed(self, image: ImageInput, *, flip: bool | None = None, **options: Any) -> dict:
        """~ POST /v1/embed: every face with its L2-normalised embedding."""
        result = self.run(image, embed=True, flip=flip, **options)
        faces = [face | {"embedding": e.tolist()} for face, e in zip(faces_of(result), _rows(result.embeddings))]
        return counted(result) | {"image": _size(result), "model_sha256": self.model_sha256, "faces": faces}

    def expression(
        self, image: ImageInput, *, modes: bool = False, modes_overlay: bool = False, **options: Any
    ) -> dict:
        """~ POST /v1/expression: every face with its 7 expression probabilities (+ StRA mode maps on request)."""
        result = self.run(image, expression=True, modes=modes or modes_overlay, **options)
        faces = [
            _with_modes(face | {"expression": expression_of(p)}, m)
            for face, p, m in zip(faces_of(result), _rows(result.expressions), _modes_of(result, modes_overlay))
        ]
        return counted(result) | {"image": _size(result), "faces": faces}

    def analyze(
        self,
        image: ImageInput,
        *,
        flip: bool | None = None,
        modes: bool = False,
        modes_overlay: bool = False,
        **options: Any,
    ) -> dict:
        """~ POST /v1/analyze: every face with embedding and expression, from one detection pass."""
        result = self.run(image, embed=True, flip=flip, expression=True, modes=modes or modes_overlay, **options)
        faces = [
            _with_modes(face | {"embedding": e.tolist(), "expression": expression_of(p)}, m)
            for face, e, p, m in zip(
                faces_of(result), _rows(result.embeddings), _rows(result.expressions), _modes_of(result, modes_overlay)
            )
        ]
        return counted(result) | {"image": _size(result), "model_sha256": self.model_sha256, "faces": faces}

    def decision(
        self, far: float | None = None, threshold: float | None = None, *, override: str = "pass threshold="
    ) -> Choice:
        """The accept threshold: `threshold` when given, else the calibrated one for `far` (the default FAR when None).
        `override` words how a caller passes a threshold, in the errors."""
        return choose_threshold(
            self.calibration,
            self.settings.default_far,
            far,
            threshold,
            model=self.model_sha256,
            source=str(self.settings.thresholds_file),
            override=override,
        )

    def far_at_score(self, similarity: float) -> float | None:
        """The FAR of a threshold set at this similarity, from the calibration (None without one)."""
        return None if self.calibration is None else self.calibration.far_at_score(similarity)

    def faces_with_embeddings(
        self, image: ImageInput, name: str = "the image", *, flip: bool | None = None, **options: Any
    ) -> AnalyzedImage:
        """`run(embed=True)`, refusing an image without a face (the REST 422 no_face)."""
        result = self.run(image, embed=True, flip=flip, **options)
        if not result.detections:
            raise ImageError("no_face", f"no face found in {name}{low_quality_note(result)}")
        return result

    def verify(
        self,
        image1: ImageInput,
        image2: ImageInput,
        *,
        far: float | None = None,
        threshold: float | None = None,
        flip: bool | None = None,
        **options: Any,
    ) -> dict:
        """~ POST /v1/verify: every face of image1 against every face of image2; the best pair decides."""
        chosen = self.decision(far, threshold)  # before any model work, as the service checks its query first
        first = self.faces_with_embeddings(image1, _named("image1", image1), flip=flip, **options)
        second = self.faces_with_embeddings(image2, _named("image2", image2), flip=flip, **options)
        similarities = first.embeddings @ second.embeddings.T
        pairs = [
            {
                "face1": i,
                "face2": j,
                "similarity": float(similarities[i, j]),
                "far_at_score": self.far_at_score(float(similarities[i, j])),
                "verified": bool(similarities[i, j] >= chosen.threshold),
            }
            for i in range(similarities.shape[0])
            for j in range(similarities.shape[1])
        ]
        pairs.sort(key=lambda pair: pair["similarity"], reverse=True)
        best = pairs[0]
        return {
            "verified": best["verified"],
            "similarity": best["similarity"],
            "decision": decision_of(chosen),
            "best": best,
            "pairs": pairs,
            "faces1": faces_of(first),
            "faces2": faces_of(second),
            "faces1_found": first.faces_found,
            "faces2_found": second.faces_found,
            "truncated": first.truncated or second.truncated,
            "model_sha256": self.model_sha256,
        }


def _named(field: str, image: ImageInput) -> str:
    return f"{field} ({image})" if isinstance(image, (str, os.PathLike)) else field


def _size(result: AnalyzedImage) -> dict:
    return {"width": result.width, "height": result.height}


def _rows(values: np.ndarray | None) -> np.ndarray | list:
    return [] if values is None else values


@functools.cache
def default_analyzer() -> FaceAnalyzer:
    """The analyzer behind `stra_face.verify`, `stra_face.analyze`, ...: created on first use, then kept."""
    return FaceAnalyzer()
