"""dlib's ResNet face descriptor (128-d, CC0, published LFW 99.38%) as a distillation teacher.

A training-time extra only (`pip install -e '.[teacher]'`: dlib-bin + face_recognition_models),
never a service dependency. The teacher sees faces the way it was trained: its own 5-point
landmark model on our aligned crop, then `get_face_chip` (150x150, padding 0.25).
`stra_face.training.eval.verification --teacher dlib` and `stra_face.training.face.overlap` use it as dlib ships it;
training runs the PyTorch port (`stra_face.models.dlib_resnet`) inside the loop instead.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stra_face.models.dlib_resnet import DLIB_CHIP_PADDING, DLIB_CHIP_SIZE, dlib_model_file


def _model_file(name: str) -> str:
    return str(dlib_model_file(name))


class DlibTeacher:
    def __init__(self):
        import dlib

        self._dlib = dlib
        self.landmarks = dlib.shape_predictor(_model_file("shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(_model_file("dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, face_rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB face crop (aligned or loosely cropped) -> unit 128-d descriptor."""
        height, width = face_rgb.shape[:2]
        # The crop is the face: its landmarks are searched in the whole image.
        box = self._dlib.rectangle(0, 0, width - 1, height - 1)
        shape = self.landmarks(face_rgb, box)
        chip = self._dlib.get_face_chip(face_rgb, shape, size=DLIB_CHIP_SIZE, padding=DLIB_CHIP_PADDING)
        descriptor = np.asarray(self.encoder.compute_face_descriptor(chip), dtype=np.float32)
        return descriptor / np.linalg.norm(descriptor)


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
