"""The models of the face pipeline, loaded from the settings: shared by the service and the Python API."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stra_face.config import PipelineSettings
from stra_face.vision.detect import FaceDetector
from stra_face.vision.inference import EmbeddingModel, ExpressionModel
from stra_face.vision.quality import QualityGate
from stra_face.vision.thresholds import Calibration, load_calibration


@dataclass
class FaceModels:
    providers: list[str]  # as asked for; each model keeps those this machine can run (OnnxModel)
    detector: FaceDetector
    embedder: EmbeddingModel
    expression: ExpressionModel | None  # optional: verification alone needs no expression model
    calibration: Calibration | None  # None: the embedding model has no entry in the thresholds file
    quality_gate: QualityGate


def load_expression_model(settings: PipelineSettings, providers: list[str]) -> ExpressionModel | None:
    """The expression model, or None when its file is absent (an optional model)."""
    path = Path(settings.expression_model)
    return ExpressionModel(path, providers, settings.intra_op_threads) if path.exists() else None


def load_face_models(settings: PipelineSettings, expression: bool = True) -> FaceModels:
    """expression=False leaves the expression model out (None) for a caller that loads it when needed."""
    providers = list(settings.providers)
    embedder = EmbeddingModel(Path(settings.embedding_model), providers, settings.intra_op_threads)
    detector = FaceDetector(
        settings.min_face_size,
        settings.detection_threshold,
        settings.detection_size,
        providers=providers,
        intra_op_threads=settings.intra_op_threads,
        small_faces=settings.small_faces,
    )
    return FaceModels(
        providers,
        detector,
        embedder,
        load_expression_model(settings, providers) if expression else None,
        load_calibration(Path(settings.thresholds_file), embedder.sha256),
        quality_gate(settings),
    )


def quality_gate(settings: PipelineSettings) -> QualityGate:
    return QualityGate(settings.quality_min_score, settings.quality_min_eye_distance, settings.quality_min_sharpness)
