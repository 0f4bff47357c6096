"""Face detection with facenet-pytorch's MTCNN (its P/R/O-Net weights ship inside the wheel)."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # (4,) x1, y1, x2, y2 in image pixels
    score: float
    landmarks: np.ndarray  # (5, 2) left eye, right eye, nose, mouth left, mouth right

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


class FaceDetector:
    """Every face of an image, largest first.

    Images are downscaled so their longer side is at most `max_side` before detection (MTCNN's
    image pyramid is what costs time); coordinates are mapped back to the original pixels.
    """

    def __init__(self, min_face_size: int = 20, score_threshold: float = 0.9, max_side: int = 1280, device: str = "cpu"):
        from facenet_pytorch import MTCNN

        self.min_face_size = min_face_size
        self.score_threshold = score_threshold
        self.max_side = max_side
        self._mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size, device=device, post_process=False)
        self._lock = threading.Lock()  # MTCNN keeps per-call state on the module; one call at a time

    def detect(self, image: np.ndarray, min_face_size: int | None = None, score_threshold: float | None = None) -> list[Detection]:
        min_face_size = self.min_face_size if min_face_size is None else min_face_size
        score_threshold = self.score_threshold if score_threshold is None else score_threshold
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else image
        with self._lock, torch.inference_mode():
            self._mtcnn.min_face_size = max(8, round(min_face_size * scale))
            boxes, scores, points = self._mtcnn.detect(small, landmarks=True)
        if boxes is None:
            return []
        detections = [
            Detection(np.asarray(box, np.float32) / scale, float(score), np.asarray(pts, np.float32) / scale)
            for box, score, pts in zip(boxes, scores, points)
            if score >= score_threshold and (box[2] - box[0]) / scale >= min_face_size
        ]
        return sorted(detections, key=lambda d: d.area, reverse=True)
