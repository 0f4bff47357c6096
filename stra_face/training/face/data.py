"""Face-recognition training data: aligned 112x112 faces per identity, from folders or one compact pack.

    python -m stra_face.training.face.data pack ../shared/data/celeba299/aligned112 \
        ../shared/data/celeba10k/aligned112 \
        --out runs/data/celeba_faces.npz
    python -m stra_face.training.face.data pack ../shared/data/lfw/aligned112 --out .carry/lfw/aligned112.npz

A pack is FER2013's compact layout for colour faces: every image re-encoded as a baseline JPEG
(one quality, standard Huffman tables, one size), so all files share their header up to the
start of scan; `jpg_header` holds it once, `jpg_payload` the rest, `jpg_offsets` (N+1) where
each image starts. `paths` are `<identity>/<file>` relative to the source folder, `labels`
index `identities`. Several sources merge by identity folder name; a file present in two
sources (same identity and name) is kept once, from the first. Packs are data: write them
under runs/ or a path of your own, never into the repository.

The training view (`FaceAugment`) is one random similarity transform of the aligned crop,
rendered twice from the source pixels: into the 112x112 ArcFace frame for the student and into
the teacher's 150x150 chip frame (`teacher_chip_matrix`), so both networks see the same face,
pose and flip. The student's view is then degraded (random down-scaling, blur, JPEG) so it
learns CelebA's soft faces and real photos; the teacher keeps the sharp view by default, so
its targets stay the descriptors of the clean face.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from stra_face.vision.align import ARCFACE_TEMPLATE, similarity_transform
from stra_face.vision.preprocess import DLIB_CHIP_150, FACE_SIZE, to_face_input

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
TEACHER_CHIP = DLIB_CHIP_150.size


def teacher_chip_matrix() -> np.ndarray:
    """2x3 similarity from the 112x112 ArcFace crop to the teacher's 150x150 chip: the ArcFace
    template's points onto dlib's chip template (both in `stra_face.vision.align`), so training cuts
    the teacher's chip the way the service cuts it from detected landmarks."""
    return similarity_transform(ARCFACE_TEMPLATE, kind=DLIB_CHIP_150)


# --------------------------------------------------------------------------- images


def _sos_end(data: bytes) -> int:
    """Offset just past the JPEG's start-of-scan header: everything before it is shared by a pack."""
    position = 2  # after SOI
    while position < len(data):
        if data[position] != 0xFF:
            raise ValueError("not a baseline JPEG")
        marker, length = data[position + 1], int.from_bytes(data[position + 2 : position + 4], "big")
        position += 2 + length
        if marker == 0xDA:
            return position
    raise ValueError("JPEG without a start of scan")


class FacePack:
    """A packed set of faces: `len`, `paths`, `labels`, `identities`, `image(i)` (RGB 112x112), `encoded(i)`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        archive = np.load(self.path)
        self._header = archive["jpg_header"].tobytes()
        self._payload = archive["jpg_payload"]
        self._offsets = archive["jpg_offsets"]
        self.paths = archive["paths"].astype(str).tolist()
        self.labels = archive["labels"].astype(np.int64)
        self.identities = archive["identities"].astype(str).tolist()
        self.size = int(archive["size"])
        self._index = {p: i for i, p in enumerate(self.paths)}

    def __len__(self) -> int:
        return len(self.paths)

    def encoded(self, index: int) -> bytes:
        return self._header + self._payload[self._offsets[index] : self._offsets[index + 1]].tobytes()

    def index_of(self, relative_path: str) -> int:
        if relative_path not in self._index:
            raise KeyError(f"{self.path} holds no {relative_path}")
        return self._index[relative_path]

    def image(self, index: int) -> np.ndarray:
        image = cv2.imdecode(np.frombuffer(self.encoded(index), np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot decode {self.path}[{self.paths[index]}]")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if self.size != FACE_SIZE:  # packed smaller to fit a transfer: back to the model's frame
            image = cv2.resize(image, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_CUBIC)
        return image


class FaceFolder:
    """root/<identity>/<image> with the same interface as FacePack (identities sorted, labels reproducible)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.identities = sorted(entry.name for entry in os.scandir(self.root) if entry.is_dir())
        self.paths, labels = [], []
        for label, identity in enumerate(self.identities):
            for entry in sorted(os.scandir(self.root / identity), key=lambda e: e.name):
                if entry.name.lower().endswith(IMAGE_SUFFIXES):
                    self.paths.append(f"{identity}/{entry.name}")
                    labels.append(label)
        self.labels = np.asarray(labels, np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> np.ndarray:
        image = cv2.imread(str(self.root / self.paths[index]), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot decode {self.root / self.paths[index]}")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if image.shape[:2] != (FACE_SIZE, FACE_SIZE):
            image = cv2.resize(image, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
        return image


@dataclass(frozen=True)
class PackedImage:
    """One face of a pack, addressed like a file (`<pack>:<relative path>`): what benchmarks list as images."""

    pack: FacePack
    relative: str

    def __str__(self) -> str:
        return f"{self.pack.path}:{self.relative}"

    def encoded(self) -> bytes:
        return self.pack.encoded(self.pack.index_of(self.relative))


def open_faces(source: str | Path) -> FacePack | FaceFolder:
    """A pack (.npz) or an identity-folder tree."""
    path = Path(source)
    if path.suffix == ".npz":
        return FacePack(path)
    if path.is_dir():
        return FaceFolder(path)
    raise ValueError(f"{path}: expected a face pack (.npz) or a folder of <identity>/<face> images")


def pack_faces(sources: list[Path], out: Path, quality: int = 90, size: int = FACE_SIZE) -> dict:
    """Re-encodes every <identity>/.../<image> of the sources into one pack; returns its summary."""
    from tqdm import tqdm

    files: dict[str, Path] = {}
    for source in sources:
        for relative in sorted(
            p.relative_to(source).as_posix()
            for p in source.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and p.parent != source
        ):
            files.setdefault(relative, source / relative)  # the first source's copy wins
    if not files:
        raise ValueError(f"no <identity>/<image> files under {', '.join(map(str, sources))}")
    paths = sorted(files)
    identities = sorted({p.split("/")[0] for p in paths})
    label_of = {name: label for label, name in enumerate(identities)}
    header, payloads = None, []
    for relative in tqdm(paths, desc="pack", unit="face"):
        image = cv2.imread(str(files[relative]), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot decode {files[relative]}")
        if image.shape[:2] != (size, size):
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 0])
        data = data.tobytes()
        split = _sos_end(data)
        if header is None:
            header = data[:split]
        elif data[:split] != header:
            raise ValueError(f"{relative}: JPEG header differs from the pack's (encoder settings changed?)")
        payloads.append(np.frombuffer(data[split:], np.uint8))
    offsets = np.zeros(len(payloads) + 1, np.int64)
    offsets[1:] = np.cumsum([len(p) for p in payloads])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        jpg_header=np.frombuffer(header, np.uint8),
        jpg_payload=np.concatenate(payloads),
        jpg_offsets=offsets,
        paths=np.array(paths),
        labels=np.array([label_of[p.split("/")[0]] for p in paths], np.int64),
        identities=np.array(identities),
        size=np.int64(size),
        quality=np.int64(quality),
    )
    counts = np.bincount([label_of[p.split("/")[0]] for p in paths])
    return {
        "faces": len(paths),
        "identities": len(identities),
        "identities_with_2_or_more": int((counts >= 2).sum()),
        "bytes": out.stat().st_size,
        "size": size,
        "quality": quality,
    }


# --------------------------------------------------------------------------- augmentation


@dataclass
class FaceAugment:
    """Random view of an aligned face (see the module docstring); probabilities per face."""

    flip: float = 0.5
    rotate_degrees: float = 8.0
    scale: tuple[float, float] = (0.92, 1.08)
    shift: float = 0.04  # fraction of the crop side
    colour: float = 0.5  # brightness/contrast jitter (+-20%)
    gray: float = 0.1
    downscale: float = 0.4  # to 20-70% of the side and back up
    downscale_range: tuple[float, float] = (0.2, 0.7)
    blur: float = 0.3  # Gaussian, sigma 0.5-1.6 px
    jpeg: float = 0.3  # re-compression at quality 30-90

    def geometry(self, rng: np.random.Generator) -> np.ndarray:
        """3x3 similarity in the 112x112 frame (a mirror included when flipped)."""
        centre = FACE_SIZE / 2
        angle = np.deg2rad(rng.uniform(-self.rotate_degrees, self.rotate_degrees))
        scale = rng.uniform(*self.scale)
        cos, sin = scale * np.cos(angle), scale * np.sin(angle)
        shift = rng.uniform(-self.shift, self.shift, 2) * FACE_SIZE
        matrix = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])
        matrix[:2, 2] = centre + shift - matrix[:2, :2] @ [centre, centre]
        if rng.random() < self.flip:
            mirror = np.array([[-1, 0, FACE_SIZE - 1], [0, 1, 0], [0, 0, 1]], float)
            matrix = matrix @ mirror
        return matrix

    def photometric(self, rng: np.random.Generator) -> tuple[float, float, bool]:
        if rng.random() < self.colour:
            return rng.uniform(0.8, 1.2), rng.uniform(-25, 25), rng.random() < self.gray
        return 1.0, 0.0, rng.random() < self.gray

    @staticmethod
    def apply_colour(image: np.ndarray, gain: float, bias: float, gray: bool) -> np.ndarray:
        if gray:
            image = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        if gain != 1.0 or bias != 0.0:
            image = cv2.convertScaleAbs(image, alpha=gain, beta=bias)
        return image

    def degrade(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Low resolution, blur and compression: what CelebA's small faces and phone photos look like."""
        if rng.random() < self.downscale:
            side = max(8, int(round(FACE_SIZE * rng.uniform(*self.downscale_range))))
            small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
            image = cv2.resize(
                small, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_LINEAR if rng.random() < 0.5 else cv2.INTER_CUBIC
            )
        if rng.random() < self.blur:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.6))
        if rng.random() < self.jpeg:
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 91))])
            image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        return image


def render(image: np.ndarray, matrix: np.ndarray, size: int, border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    return cv2.warpAffine(image, matrix[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=border)


class FaceDataset(Dataset):
    """(student input (3,112,112) in [-1, 1], margin label or -1, teacher chip (150,150,3) uint8).

    `labels[i] = -1` marks distillation-only faces (identities with a single face). Without
    `augment` the face is used as aligned and the chip is the fixed crop->chip warp of it.
    Random views draw from numpy's global generator, which `engine.worker_seed` seeds per worker.
    """

    def __init__(
        self,
        faces: FacePack | FaceFolder,
        indices: np.ndarray,
        labels: np.ndarray,
        augment: FaceAugment | None = None,
        teacher_sees_degraded: bool = False,
    ):
        self.faces, self.indices, self.labels = faces, np.asarray(indices), np.asarray(labels, np.int64)
        self.augment = augment
        self.teacher_sees_degraded = teacher_sees_degraded
        self._chip = np.vstack([teacher_chip_matrix(), [0, 0, 1]]).astype(np.float64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int):
        image = self.faces.image(int(self.indices[item]))
        if self.augment is None:
            student, chip = image, render(image, self._chip, TEACHER_CHIP)
        else:
            rng = np.random.default_rng(np.random.randint(2**31))
            geometry, colour = self.augment.geometry(rng), self.augment.photometric(rng)
            clean = FaceAugment.apply_colour(render(image, geometry, FACE_SIZE), *colour)
            student = self.augment.degrade(clean, rng)
            if self.teacher_sees_degraded:
                chip = render(student, self._chip, TEACHER_CHIP)
            else:  # straight from the source pixels through the same geometry: one interpolation
                chip = FaceAugment.apply_colour(render(image, self._chip @ geometry, TEACHER_CHIP), *colour)
        tensor = torch.from_numpy(to_face_input(np.ascontiguousarray(student)[None])[0])
        return tensor, int(self.labels[item]), torch.from_numpy(np.ascontiguousarray(chip))


# --------------------------------------------------------------------------- command


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stra_face.training.face.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack", help="<identity>/<face> folders -> one compact .npz")
    pack.add_argument("sources", type=Path, nargs="+")
    pack.add_argument("--out", type=Path, required=True)
    pack.add_argument("--quality", type=int, default=90, help="JPEG quality of the re-encoded faces")
    pack.add_argument("--size", type=int, default=FACE_SIZE, help="stored side in pixels (read back at 112)")
    args = parser.parse_args(argv)
    summary = pack_faces(args.sources, args.out, args.quality, args.size)
    print(
        f"{args.out}: {summary['faces']} faces of {summary['identities']} identities "
        f"({summary['identities_with_2_or_more']} with two or more), {summary['bytes'] / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    main()
