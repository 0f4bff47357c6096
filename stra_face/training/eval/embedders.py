"""Face embedders for benchmarks and training: an ONNX file, a PyTorch checkpoint or dlib's own
pipeline, each with the aligned face it reads (`FaceInput`); and the image -> aligned face step.

Shared by `stra_face.training.eval.verification` and `stra_face.training.face.trainer` (neither imports the other
for these).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from stra_face.training.face.data import PackedImage
from stra_face.vision.align import ARCFACE_TEMPLATE, align_face
from stra_face.vision.cards import ModelCard
from stra_face.vision.preprocess import ARCFACE_112, FACE_SIZE, FaceInput, to_face_input


@dataclass
class Embedder:
    """(N, S, S, 3) uint8 RGB faces aligned for `kind` -> (N, D) raw (unnormalised) features."""

    function: Callable[[np.ndarray], np.ndarray]
    kind: FaceInput = ARCFACE_112

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        return self.function(faces)


class FacePreparer:
    """Any image -> the aligned face an embedder of `kind` reads.

    112x112 images are taken as ArcFace-aligned crops (the benchmarks' released crops): their five
    landmarks sit on the ArcFace template, so other kinds are cut from them through that template.
    Anything else goes through the service's MTCNN + 5-point alignment (largest face); where no face
    is found a centre crop is used (as InsightFace's own preprocessing does) and counted in `fallbacks`.
    """

    def __init__(self, kind: FaceInput = ARCFACE_112):
        self.kind = kind
        self._detector = None
        self.fallbacks = 0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] == (FACE_SIZE, FACE_SIZE):
            return image if self.kind == ARCFACE_112 else align_face(image, ARCFACE_TEMPLATE, self.kind)
        if self._detector is None:
            from stra_face.vision.detect import FaceDetector

            self._detector = FaceDetector(score_threshold=0.6)
        detections = self._detector.detect(image)
        if detections:
            return align_face(image, max(detections, key=lambda face: face.area).landmarks, self.kind)
        self.fallbacks += 1
        height, width = image.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        return cv2.resize(
            image[top : top + side, left : left + side], (self.kind.size, self.kind.size), interpolation=cv2.INTER_AREA
        )


def load_rgb(source) -> np.ndarray:
    """An image file, encoded bytes or a face in a pack -> (H, W, 3) uint8 RGB."""
    if isinstance(source, PackedImage):
        source = source.encoded()
    data = (
        np.frombuffer(source, np.uint8)
        if isinstance(source, (bytes, bytearray))
        else np.fromfile(str(source), np.uint8)
    )
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode {source if not isinstance(source, bytes) else 'image bytes'}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def embed_images(
    embedder: Callable[[np.ndarray], np.ndarray],
    images: list,
    batch_size: int = 64,
    preparer: FacePreparer | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(features of the images, features of their mirrors), both raw. A plain callable reads ArcFace crops."""
    preparer = preparer or FacePreparer(getattr(embedder, "kind", ARCFACE_112))
    plain, mirrored = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="embed", leave=False):
        batch = np.stack([preparer(load_rgb(source)) for source in images[start : start + batch_size]])
        plain.append(embedder(batch))
        mirrored.append(embedder(np.ascontiguousarray(batch[:, :, ::-1])))
    return np.concatenate(plain), np.concatenate(mirrored)


def onnx_embedder(path: str | Path, providers: list[str] | None = None, card: ModelCard | None = None) -> Embedder:
    """An exported embedding model; its card (the file's own, or `card` before that is written) says which aligned
    face it reads."""
    from stra_face.vision.inference import EmbeddingModel

    model = EmbeddingModel(Path(path), providers or ["CUDAExecutionProvider", "CPUExecutionProvider"], card=card)
    return Embedder(lambda faces: model.run(to_face_input(faces, model.input_kind)), model.input_kind)


def torch_embedder(model: torch.nn.Module, device: str = "cpu", kind: FaceInput = ARCFACE_112) -> Embedder:
    model = model.eval().to(device)

    def embed(faces: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(to_face_input(faces, kind)).to(device)).float().cpu().numpy()

    return Embedder(embed, kind)


def teacher_embedder() -> Embedder:
    """dlib's own pipeline on ArcFace crops: its 5-point predictor on the crop, get_face_chip, its ResNet."""
    from stra_face.training.face.teacher import DlibTeacher

    teacher = DlibTeacher()
    return Embedder(lambda faces: np.stack([teacher.embed(face) for face in faces]), ARCFACE_112)


def load_checkpoint_model(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """A model saved by `stra_face.training.face.trainer` (registry name + kwargs + state_dict), in eval mode, and its
    checkpoint."""
    from stra_face import models

    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model = models.create_model(checkpoint["model"]["name"], **checkpoint["model"]["kwargs"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint
