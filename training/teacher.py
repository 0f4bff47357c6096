"""dlib's ResNet face descriptor (128-d, CC0, published LFW 99.38%) as a distillation teacher.

A training-time extra only (`pip install -e '.[teacher]'`: dlib-bin + face_recognition_models),
never a service dependency. The teacher sees faces the way it was trained: its own 5-point
landmark model on our aligned crop, then `get_face_chip` (150x150, padding 0.25).

    python -m training.teacher --images celeba299/aligned112 --out teacher_celeba.npz
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from models.dlib_resnet import DLIB_CHIP_PADDING, DLIB_CHIP_SIZE, DLIB_DESCRIPTOR_DIM, dlib_model_file

TEACHER_DIM = DLIB_DESCRIPTOR_DIM


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


def embed_folder(root: Path, teacher: DlibTeacher, flip: bool = False) -> tuple[list[str], np.ndarray]:
    """Teacher descriptors for every image under root, keyed by path relative to root.

    flip=True sums the descriptors of the image and its mirror before normalising, as the
    verification protocol does for every model it benchmarks.
    """
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"})
    embeddings = []
    for path in tqdm(paths, desc="teacher", unit="img"):
        image = read_rgb(path)
        vector = teacher.embed(image)
        if flip:
            vector = vector + teacher.embed(np.ascontiguousarray(image[:, ::-1]))
        embeddings.append(vector / np.linalg.norm(vector))
    return [str(p.relative_to(root)) for p in paths], np.stack(embeddings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.teacher", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="folder of face images (any depth)")
    parser.add_argument("--out", type=Path, required=True, help=".npz with `paths` and `embeddings`")
    parser.add_argument("--flip", action="store_true", help="sum with the mirrored image's descriptor")
    args = parser.parse_args(argv)
    paths, embeddings = embed_folder(args.images, DlibTeacher(), flip=args.flip)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, paths=np.array(paths), embeddings=embeddings)
    print(f"{args.out}: {len(paths)} faces, {embeddings.shape[1]}-d")


if __name__ == "__main__":
    main()
