"""5-point similarity alignment: one function for the service, the benchmark and face training."""
from __future__ import annotations

import cv2
import numpy as np

from service.pipeline.preprocess import EXPRESSION_SIZE, FACE_SIZE

# InsightFace's ArcFace template for 112x112 crops: left eye, right eye, nose, mouth left, mouth right.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
# FER2013 crops show the whole head with some margin; the ArcFace template shrunk to 80% around
# the crop centre approximates that framing.
EXPRESSION_ZOOM = 0.8


def similarity_transform(landmarks: np.ndarray, size: int = FACE_SIZE, zoom: float = 1.0) -> np.ndarray:
    """2x3 matrix mapping the 5 landmarks onto the template scaled to `size` (least squares,
    rotation + uniform scale + translation)."""
    template = (ARCFACE_TEMPLATE - FACE_SIZE / 2) * zoom + FACE_SIZE / 2
    template = template * (size / FACE_SIZE)
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32).reshape(5, 2), template, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("degenerate landmarks: no similarity transform")
    return matrix


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """(size, size, 3) uint8 RGB ArcFace-aligned crop."""
    matrix = similarity_transform(landmarks, size)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def expression_crop(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(48, 48) uint8 grayscale crop in FER2013's framing."""
    matrix = similarity_transform(landmarks, EXPRESSION_SIZE, EXPRESSION_ZOOM)
    crop = cv2.warpAffine(image, matrix, (EXPRESSION_SIZE, EXPRESSION_SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
