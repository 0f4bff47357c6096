"""5-point similarity alignment: one function for the service, the benchmark and face training."""

from __future__ import annotations

import cv2
import numpy as np

from stra_face.vision.preprocess import ARCFACE_112, DLIB_CHIP_150, EXPRESSION_SIZE, FaceInput

# InsightFace's ArcFace template for 112x112 crops: left eye, right eye, nose, mouth left, mouth right.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
# dlib's 150x150 face chip (shape_predictor_5 + get_face_chip, padding 0.25) in MTCNN's terms: where the
# service's detector puts its 5 landmarks on chips cut by dlib itself, median over 104 faces (LFW
# raw_sample and CFP frontal 001-005; the median, as dlib's predictor slips on some poor images):
# python -m stra_face.training.face.chip_template measure --images ../shared/data/lfw/raw_sample \
#     ../shared/data/cfp/raw_sample/00[1-5]/frontal --out runs/template/faces.npz
DLIB_CHIP_TEMPLATE = np.array(
    [[46.4984, 44.9822], [102.48, 44.7332], [73.396, 74.7156], [49.5112, 103.4296], [98.3861, 103.1501]],
    dtype=np.float32,
)
TEMPLATES = {ARCFACE_112.name: ARCFACE_TEMPLATE, DLIB_CHIP_150.name: DLIB_CHIP_TEMPLATE}
# Where the 5 landmarks sit in FER2013's 48x48 frame: the mean of this service's detector landmarks
# on 1,000 random PublicTest images upscaled 4x (897 detected; spread 3-5 px per point), measured by
# benchmarks/fer_crop_geometry.py. FER2013 faces fill more of the frame than ArcFace crops do.
FER2013_TEMPLATE = np.array(
    [[15.13, 18.12], [32.75, 17.65], [24.01, 28.19], [16.82, 37.38], [31.59, 37.05]],
    dtype=np.float32,
)


def similarity_transform(
    landmarks: np.ndarray, size: int | None = None, zoom: float = 1.0, kind: FaceInput = ARCFACE_112
) -> np.ndarray:
    """2x3 matrix mapping the 5 landmarks onto `kind`'s template scaled to `size` (default: the
    kind's own size; rotation + uniform scale + translation, fitted robustly)."""
    template = (TEMPLATES[kind.name] - kind.size / 2) * zoom + kind.size / 2
    template = template * ((size or kind.size) / kind.size)
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32).reshape(5, 2), template, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("degenerate landmarks: no similarity transform")
    return matrix


def align_face(image: np.ndarray, landmarks: np.ndarray, kind: FaceInput = ARCFACE_112) -> np.ndarray:
    """(S, S, 3) uint8 RGB face aligned for an embedding model of `kind` (ArcFace 112 crop, dlib 150 chip)."""
    matrix = similarity_transform(landmarks, kind=kind)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if kind.antialias and scale < 0.5:
        # Shrink by area averaging to about twice the chip's resolution first: bilinear sampling alone aliases.
        shrink = 2 * scale
        height, width = image.shape[:2]
        small = cv2.resize(
            image, (max(1, round(width * shrink)), max(1, round(height * shrink))), interpolation=cv2.INTER_AREA
        )
        shrink_x, shrink_y = small.shape[1] / width, small.shape[0] / height
        # pixel centres: original x = (small x + 0.5) / shrink_x - 0.5
        matrix = matrix @ np.array(
            [[1 / shrink_x, 0, 0.5 / shrink_x - 0.5], [0, 1 / shrink_y, 0.5 / shrink_y - 0.5], [0, 0, 1]]
        )
        image = small
    return cv2.warpAffine(image, matrix, (kind.size, kind.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


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
