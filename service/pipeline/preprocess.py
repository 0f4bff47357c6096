"""Model-input normalisation: the one definition shared by the service, training and benchmarks."""
from __future__ import annotations

import numpy as np

FACE_SIZE = 112  # ArcFace-aligned RGB faces
EXPRESSION_SIZE = 48  # FER2013 grayscale faces
# FER2013 labels 0..6, the expression model's output order.
EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def to_face_input(faces: np.ndarray) -> np.ndarray:
    """(N, 112, 112, 3) uint8 RGB -> (N, 3, 112, 112) float32 in [-1, 1] (InsightFace's scaling)."""
    if faces.ndim != 4 or faces.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) RGB faces, got {faces.shape}")
    return ((faces.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2).copy()


def to_expression_input(faces: np.ndarray) -> np.ndarray:
    """(N, 48, 48) uint8 grayscale -> (N, 1, 48, 48) float32 in [-1, 1]."""
    if faces.ndim != 3:
        raise ValueError(f"expected (N, H, W) grayscale faces, got {faces.shape}")
    return ((faces.astype(np.float32) - 127.5) / 127.5)[:, None].copy()
