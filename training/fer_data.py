"""FER2013 in every layout users have, decoded once into memory (35,887 x 48 x 48 bytes = 83 MB).

- the Kaggle image folder, zipped or unpacked: `<emotion>/<Usage>_<id>.jpg` at any depth
  (the official split is the file-name prefix: Training, PublicTest, PrivateTest);
- the original `fer2013.csv` (columns emotion, pixels, Usage);
- the compact `fer2013_jpg.npz` of ../shared/data/fer2013 (a shared JPEG header + payloads).
"""
from __future__ import annotations

import csv
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from service.pipeline.preprocess import EXPRESSION_SIZE, EXPRESSIONS, to_expression_input

SPLITS = ("Training", "PublicTest", "PrivateTest")
_FILE_PATTERN = re.compile(r"(?:^|/)(?P<emotion>[a-z]+)/(?P<usage>Training|PublicTest|PrivateTest)_[^/]+\.(?:jpe?g|png)$", re.IGNORECASE)


@dataclass
class FerData:
    images: np.ndarray  # (N, 48, 48) uint8
    labels: np.ndarray  # (N,) int64, indices into EXPRESSIONS
    usage: np.ndarray  # (N,) str, one of SPLITS

    def split(self, usage: str) -> "FerData":
        if usage not in SPLITS:
            raise ValueError(f"unknown split {usage!r}; one of {SPLITS}")
        keep = self.usage == usage
        return FerData(self.images[keep], self.labels[keep], self.usage[keep])

    def sample(self, count: int, seed: int = 0) -> "FerData":
        """A seeded random subset (files are grouped by class, so the first N would be one class)."""
        keep = np.sort(np.random.default_rng(seed).permutation(len(self))[:count])
        return FerData(self.images[keep], self.labels[keep], self.usage[keep])

    def __len__(self) -> int:
        return len(self.labels)


def _decode_gray(data: bytes, name: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot decode {name}")
    if image.shape != (EXPRESSION_SIZE, EXPRESSION_SIZE):
        image = cv2.resize(image, (EXPRESSION_SIZE, EXPRESSION_SIZE), interpolation=cv2.INTER_AREA)
    return image


def _from_named_files(items: list[tuple[str, bytes]]) -> FerData:
    images, labels, usage = [], [], []
    for name, data in items:
        match = _FILE_PATTERN.search(name.replace("\\", "/"))
        emotion = match["emotion"].lower() if match else None
        if emotion not in EXPRESSIONS:
            continue
        images.append(_decode_gray(data, name))
        labels.append(EXPRESSIONS.index(emotion))
        usage.append(match["usage"])
    if not images:
        raise ValueError("no FER2013 images found (expected <emotion>/<Training|PublicTest|PrivateTest>_<id>.jpg)")
    return FerData(np.stack(images), np.asarray(labels, np.int64), np.asarray(usage))


def read_zip(path: Path) -> FerData:
    with zipfile.ZipFile(path) as archive:
        names = sorted(n for n in archive.namelist() if _FILE_PATTERN.search(n))
        return _from_named_files([(n, archive.read(n)) for n in names])


def read_folder(path: Path) -> FerData:
    files = sorted(p for p in path.rglob("*") if p.is_file() and _FILE_PATTERN.search(p.as_posix()))
    return _from_named_files([(p.relative_to(path).as_posix(), p.read_bytes()) for p in files])


def read_csv(path: Path) -> FerData:
    images, labels, usage = [], [], []
    with path.open(newline="") as handle:
        for row_number, row in enumerate(csv.DictReader(handle), start=2):
            pixels = np.array(row["pixels"].split(), dtype=np.uint8)
            if pixels.size != EXPRESSION_SIZE * EXPRESSION_SIZE or row["Usage"] not in SPLITS:
                raise ValueError(f"{path}:{row_number}: expected 2304 pixels and Usage in {SPLITS}")
            images.append(pixels.reshape(EXPRESSION_SIZE, EXPRESSION_SIZE))
            labels.append(int(row["emotion"]))
            usage.append(row["Usage"])
    return FerData(np.stack(images), np.asarray(labels, np.int64), np.asarray(usage))


def write_csv(data: FerData, path: Path) -> None:
    """The original fer2013.csv layout (used by tests, and handy to convert a folder into a CSV)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for image, label, usage in zip(data.images, data.labels, data.usage):
            writer.writerow([int(label), " ".join(map(str, image.reshape(-1))), usage])


def read_compact_npz(path: Path) -> FerData:
    archive = np.load(path)
    header, payload, offsets = archive["jpg_header"].tobytes(), archive["jpg_payload"], archive["jpg_offsets"]
    images = np.stack([_decode_gray(header + payload[offsets[i]:offsets[i + 1]].tobytes(), f"{path}[{i}]") for i in range(len(offsets) - 1)])
    return FerData(images, archive["labels"].astype(np.int64), archive["usage"].astype(str))


def load_fer2013(source: str | Path) -> FerData:
    """Reads any supported layout, chosen by what `source` is."""
    path = Path(source)
    if path.is_dir():
        return read_folder(path)
    suffix = path.suffix.lower()
    readers = {".zip": read_zip, ".csv": read_csv, ".npz": read_compact_npz}
    if suffix not in readers:
        raise ValueError(f"{path}: expected a folder, .zip, .csv or .npz")
    return readers[suffix](path)


def fer_train_augmentation() -> A.Compose:
    """Random crop/shift (via affine + resized crop), flip, small rotation, random erasing."""
    size = EXPRESSION_SIZE
    return A.Compose(
        [
            A.RandomResizedCrop(size=(size, size), scale=(0.8, 1.0), ratio=(0.9, 1.1), p=1.0),
            A.HorizontalFlip(p=0.5),
            A.Affine(rotate=(-10, 10), translate_percent=(-0.1, 0.1), p=0.5),
            A.RandomBrightnessContrast(0.2, 0.2, p=0.5),
            A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(8, 16), hole_width_range=(8, 16), p=0.5),
        ]
    )


class FerDataset(Dataset):
    """(1x48x48 tensor in [-1, 1], label); normalised by the same function the service uses."""

    def __init__(self, data: FerData, augment: A.Compose | None = None):
        self.data = data
        self.augment = augment

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        image = self.data.images[index]
        if self.augment is not None:
            image = self.augment(image=image)["image"]
        return torch.from_numpy(to_expression_input(image[None])[0]), int(self.data.labels[index])


def tta_views(batch: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """Test-time views of a (N, 1, 48, 48) batch: none, flip (2 views) or tencrop (10 views).

    tencrop: the four corner and the centre 42x42 crops resized back to 48x48 (within the
    RandomResizedCrop scales seen in training), each with its mirror.
    """
    if mode == "none":
        return [batch]
    if mode == "flip":
        return [batch, batch.flip(-1)]
    if mode == "tencrop":
        size, crop = batch.shape[-1], 42
        offsets = [(0, 0), (0, size - crop), (size - crop, 0), (size - crop, size - crop), ((size - crop) // 2, (size - crop) // 2)]
        views = []
        for top, left in offsets:
            view = torch.nn.functional.interpolate(batch[..., top:top + crop, left:left + crop], size=(size, size), mode="bilinear", align_corners=False)
            views += [view, view.flip(-1)]
        return views
    raise ValueError(f"unknown TTA mode {mode!r} (none, flip, tencrop)")
