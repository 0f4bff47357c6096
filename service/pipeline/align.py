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
# Where the 5 landmarks sit in FER2013's 48x48 frame: the mean of this service's detector landmarks
# on 1,000 random PublicTest images upscaled 4x (897 detected; spread 3-5 px per point), measured by
# benchmarks/fer_crop_geometry.py. FER2013 faces fill more of the frame than ArcFace crops do.
FER2013_TEMPLATE = np.array(
    [[15.13, 18.12], [32.75, 17.65], [24.01, 28.19], [16.82, 37.38], [31.59, 37.05]],
    dtype=np.float32,
)


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


def expression_crop(image: np.ndarray, landmarks: np.ndarray, template: np.ndarray = FER2013_TEMPLATE) -> np.ndarray:
    """(48, 48) uint8 grayscale crop in FER2013's framing: the landmarks land on `template`.

    The warp goes to an integer multiple of 48 first and is then area-averaged down, so a face
    much larger than 48 px is resampled like FER2013's own downscaled images instead of aliased.
    """
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32).reshape(5, 2), template, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("degenerate landmarks: no similarity transform")
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))  # crop pixels per image pixel
    factor = int(np.clip(np.ceil(1.0 / max(scale, 1e-6)), 1, 8))
    size = EXPRESSION_SIZE * factor
    big = matrix * factor
    big[:, 2] += (factor - 1) / 2  # pixel centres: crop pixel j averages big pixels j*factor .. j*factor + factor - 1
    crop = cv2.warpAffine(image, big, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if factor > 1:
        crop = cv2.resize(crop, (EXPRESSION_SIZE, EXPRESSION_SIZE), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
