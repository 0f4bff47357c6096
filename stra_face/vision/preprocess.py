"""Model-input normalisation: the one definition shared by the service, training and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FACE_SIZE = 112  # ArcFace-aligned RGB faces
EXPRESSION_SIZE = 48  # FER2013 grayscale faces
# FER2013 labels 0..6, the expression model's output order.
EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@dataclass(frozen=True)
class FaceInput:
    """What an embedding model reads: a face aligned to `name`'s 5-point template at size x size,
    RGB, scaled as (pixel - offset) / scale. A model's card names its kind (`input` field).
    antialias: shrink large faces by area averaging before the bilinear warp, as dlib's chip
    extraction does (its image pyramid); the ArcFace crops of the benchmarks were cut without."""

    name: str
    size: int
    offset: float
    scale: float
    antialias: bool = False


ARCFACE_112 = FaceInput("arcface_112", FACE_SIZE, 127.5, 127.5)  # InsightFace's crop, pixels in [-1, 1]
DLIB_CHIP_150 = FaceInput("dlib_chip_150", 150, 0.0, 1.0, antialias=True)  # dlib's chip, 0..255 (the model scales)
FACE_INPUTS = {kind.name: kind for kind in (ARCFACE_112, DLIB_CHIP_150)}


def to_face_input(faces: np.ndarray, kind: FaceInput = ARCFACE_112) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB -> (N, 3, S, S) float32 model input (default: ArcFace crops in [-1, 1])."""
    if faces.ndim != 4 or faces.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) RGB faces, got {faces.shape}")
    return ((faces.astype(np.float32) - kind.offset) / kind.scale).transpose(0, 3, 1, 2).copy()


def to_expression_input(faces: np.ndarray) -> np.ndarray:
    """(N, 48, 48) uint8 grayscale -> (N, 1, 48, 48) float32 in [-1, 1]."""
    if faces.ndim != 3:
        raise ValueError(f"expected (N, H, W) grayscale faces, got {faces.shape}")
    return ((faces.astype(np.float32) - 127.5) / 127.5)[:, None].copy()
