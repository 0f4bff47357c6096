"""Face-quality gate after detection: is this detection a face worth recognising?

MTCNN passes patches that are not faces (a suit edge against a blurred background scores 0.914 on
obama-720p.jpg) and faces too small or blurred to recognise. Each check here is cheap (five
landmarks, one 112x112 crop) and names itself in `reasons` when it fails:
- `low_detector_score`: O-Net's face probability under `min_score`;
- `too_small`: the distance between the eyes under `min_eye_distance` pixels (recognition models
  read 112-150 px crops in which the eyes sit ~40 px apart; below ~12 px there is little to read);
- `implausible_landmarks`: eyes, nose and mouth not in a face's order (eyes above the nose above the
  mouth along the face's own axis, left eye left of right eye), eye distance out of proportion with
  the box, or the nose far outside the eyes' span (asymmetry beyond a turned head);
- `blurry`: variance of the Laplacian of the aligned grey crop under `min_sharpness`.
Thresholds measured on ../shared/data (docs/decisions.md, `python benchmarks/quality_gate.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from stra_face.vision.align import align_face
from stra_face.vision.detect import Detection


@dataclass(frozen=True)
class QualityGate:
    min_score: float = 0.95
    min_eye_distance: float = 12.0
    min_sharpness: float = 20.0
    eye_to_box: tuple[float, float] = (0.12, 0.9)  # eye distance / box width
    max_nose_offset: float = 2.0  # |nose - eyes' midpoint| across the face, in eye distances (profiles: up to ~1.8)


@dataclass(frozen=True)
class Quality:
    passed: bool
    reasons: list[str]
    measures: dict[str, float] = field(default_factory=dict)


def landmark_measures(landmarks: np.ndarray, box: np.ndarray) -> dict[str, float]:
    """Geometry in the face's own frame: x along the eyes (left -> right eye), y down to the mouth."""
    left_eye, right_eye, nose, mouth_left, mouth_right = np.asarray(landmarks, np.float64)
    eyes_mid, mouth_mid = (left_eye + right_eye) / 2, (mouth_left + mouth_right) / 2
    eye_vector = right_eye - left_eye
    eye_distance = float(np.hypot(*eye_vector))
    down = mouth_mid - eyes_mid
    face_height = float(np.hypot(*down))
    if eye_distance < 1e-6 or face_height < 1e-6:
        return {
            "eye_distance": eye_distance,
            "nose_depth": float("nan"),
            "nose_offset": float("inf"),
            "eye_to_box": 0.0,
            "handedness": 0.0,
        }
    across = eye_vector / eye_distance
    # cross > 0: the eye line points right of "down" in image coordinates (y down): left eye on the image left
    handedness = float(np.sign(across[0] * down[1] - across[1] * down[0]))
    return {
        "eye_distance": eye_distance,
        "nose_depth": float(np.dot(nose - eyes_mid, down) / face_height**2),  # 0 at the eyes, 1 at the mouth
        "nose_offset": float(abs(np.dot(nose - eyes_mid, across)) / eye_distance),
        "eye_to_box": eye_distance / max(1e-6, float(box[2] - box[0])),
        "handedness": handedness,
    }


def sharpness(image: np.ndarray, landmarks: np.ndarray) -> float:
    """Variance of the Laplacian of the face aligned to 112x112 (grey): low on blur and flat patches."""
    crop = cv2.cvtColor(align_face(image, np.asarray(landmarks, np.float32)), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(crop, cv2.CV_64F).var())


def assess(image: np.ndarray, detection: Detection, gate: QualityGate = QualityGate()) -> Quality:
    geometry = landmark_measures(detection.landmarks, detection.box)
    measures = {
        "detector_score": float(detection.score),
        **geometry,
        "sharpness": sharpness(image, detection.landmarks),
    }
    reasons = []
    if detection.score < gate.min_score:
        reasons.append("low_detector_score")
    if geometry["eye_distance"] < gate.min_eye_distance:
        reasons.append("too_small")
    low, high = gate.eye_to_box
    plausible = (
        geometry["handedness"] > 0
        and 0.0 < geometry["nose_depth"] < 1.0
        and low <= geometry["eye_to_box"] <= high
        and geometry["nose_offset"] <= gate.max_nose_offset
    )
    if not plausible:
        reasons.append("implausible_landmarks")
    if measures["sharpness"] < gate.min_sharpness:
        reasons.append("blurry")
    return Quality(not reasons, reasons, measures)
