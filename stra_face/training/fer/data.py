"""FER2013 in every layout users have, decoded once into memory (35,887 x 48 x 48 bytes = 83 MB).

- the Kaggle image folder, zipped or unpacked: `<emotion>/<Usage>_<id>.jpg` at any depth
  (the official split is the file-name prefix: Training, PublicTest, PrivateTest);
- the original `fer2013.csv` (columns emotion, pixels, Usage);
- the compact `fer2013_jpg.npz` of ../shared/data/fer2013 (a shared JPEG header + payloads).
"""

from __future__ import annotations

import csv
import dataclasses
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from stra_face.training.fer.config import SPLITS
from stra_face.vision.preprocess import EXPRESSION_SIZE, EXPRESSIONS, to_expression_input

if TYPE_CHECKING:  # albumentations is needed for training only, imported where augmentation is built
    import albumentations as A

_FILE_PATTERN = re.compile(
    r"(?:^|/)(?P<emotion>[a-z]+)/(?P<usage>Training|PublicTest|PrivateTest)_[^/]+\.(?:jpe?g|png)$", re.IGNORECASE
)


@dataclass
class FerData:
    images: np.ndarray  # (N, 48, 48) uint8
    labels: np.ndarray  # (N,) int64, indices into `classes`
    usage: np.ndarray  # (N,) str, one of SPLITS
    targets: np.ndarray | None = None  # (N, len(classes)) float32 soft labels (FER+ vote shares), or None
    classes: tuple[str, ...] = EXPRESSIONS

    def take(self, keep: np.ndarray) -> FerData:
        """The rows `keep` (a mask or indices) selects."""
        targets = None if self.targets is None else self.targets[keep]
        return dataclasses.replace(
            self, images=self.images[keep], labels=self.labels[keep], usage=self.usage[keep], targets=targets
        )

    def split(self, usage: str) -> FerData:
        if usage not in SPLITS:
            raise ValueError(f"unknown split {usage!r}; one of {SPLITS}")
        return self.take(self.usage == usage)

    def sample(self, count: int, seed: int = 0) -> FerData:
        """A seeded random subset (files are grouped by class, so the first N would be one class)."""
        return self.take(np.sort(np.random.default_rng(seed).permutation(len(self))[:count]))

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
    images = np.stack(
        [
            _decode_gray(header + payload[offsets[i] : offsets[i + 1]].tobytes(), f"{path}[{i}]")
            for i in range(len(offsets) - 1)
        ]
    )
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
    import albumentations as A

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
    """(1x48x48 tensor in [-1, 1], target); normalised by the same function the service uses.
    The target is the class index, or the soft-label row when the data has `targets`."""

    def __init__(self, data: FerData, augment: A.Compose | None = None):
        self.data = data
        self.augment = augment

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        image = self.data.images[index]
        if self.augment is not None:
            image = self.augment(image=image)["image"]
        target = (
            int(self.data.labels[index]) if self.data.targets is None else torch.from_numpy(self.data.targets[index])
        )
        return torch.from_numpy(to_expression_input(image[None])[0]), target


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
        offsets = [
            (0, 0),
            (0, size - crop),
            (size - crop, 0),
            (size - crop, size - crop),
            ((size - crop) // 2, (size - crop) // 2),
        ]
        views = []
        for top, left in offsets:
            view = torch.nn.functional.interpolate(
                batch[..., top : top + crop, left : left + crop],
                size=(size, size),
                mode="bilinear",
                align_corners=False,
            )
            views += [view, view.flip(-1)]
        return views
    raise ValueError(f"unknown TTA mode {mode!r} (none, flip, tencrop)")


# --------------------------------------------------------------------------- device-resident path
# The whole split lives on the training device as uint8 (28,709 x 48 x 48 = 66 MB) and each batch is
# augmented there in one go, so a GPU is never waiting on loader workers. Same augmentation family
# and strengths as fer_train_augmentation (the loader path, kept for CPU runs and as the reference).


def augment_batch(images: torch.Tensor) -> torch.Tensor:
    """(B, 48, 48) uint8 on any device -> (B, 1, 48, 48) float32 in [-1, 1], augmented per sample:
    random resized crop (area 0.8-1, aspect 0.9-1.1), horizontal flip (p 0.5), rotation +-10 deg
    with shift +-10% (p 0.5), brightness/contrast +-0.2 (p 0.5), one 8-16 px erased box (p 0.5).
    The geometric part is one affine grid per sample (F.affine_grid / grid_sample, border pixels
    repeated as the service's crop does); randomness comes from torch's global generator.
    """
    batch, height, width = images.shape
    device = images.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.empty(batch, device=device).uniform_(low, high)

    def coin(p: float = 0.5) -> torch.Tensor:
        return torch.rand(batch, device=device) < p

    # theta maps output coordinates (normalised to [-1, 1]) to input coordinates:
    # input = crop(flip(rotate^-1(output - shift))).
    area, log_ratio = uniform(0.8, 1.0), uniform(np.log(0.9), np.log(1.1))
    crop_w = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
    crop_h = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    centre_x = (1 - crop_w) * uniform(-1.0, 1.0)
    centre_y = (1 - crop_h) * uniform(-1.0, 1.0)
    flip = torch.where(coin(), -1.0, 1.0)
    affine = coin()
    angle = torch.where(affine, uniform(-10.0, 10.0), 0.0).deg2rad()
    shift_x = torch.where(affine, uniform(-0.2, 0.2), 0.0)  # 10% of the width = 0.2 in normalised units
    shift_y = torch.where(affine, uniform(-0.2, 0.2), 0.0)
    cos, sin = angle.cos(), angle.sin()
    # rotate^-1 = [[cos, sin], [-sin, cos]]; then flip x; then scale by the crop size and move to its centre.
    a, b = crop_w * flip * cos, crop_w * flip * sin
    c, d = -crop_h * sin, crop_h * cos
    theta = torch.stack(
        [
            torch.stack([a, b, centre_x - a * shift_x - b * shift_y], 1),
            torch.stack([c, d, centre_y - c * shift_x - d * shift_y], 1),
        ],
        1,
    )
    pixels = images.unsqueeze(1).float()
    grid = torch.nn.functional.affine_grid(theta, [batch, 1, height, width], align_corners=False)
    pixels = torch.nn.functional.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # brightness/contrast as albumentations: alpha * x + beta * 255
    jitter = coin()
    alpha = torch.where(jitter, uniform(0.8, 1.2), 1.0).view(-1, 1, 1, 1)
    beta = torch.where(jitter, uniform(-0.2, 0.2), 0.0).view(-1, 1, 1, 1)
    pixels = (pixels * alpha + beta * 255.0).clamp(0.0, 255.0)

    # one erased (black) box, as CoarseDropout
    hole_h = torch.randint(8, 17, (batch,), device=device)
    hole_w = torch.randint(8, 17, (batch,), device=device)
    top = (torch.rand(batch, device=device) * (height - hole_h + 1)).floor()
    left = (torch.rand(batch, device=device) * (width - hole_w + 1)).floor()
    rows = torch.arange(height, device=device).view(1, -1, 1)
    cols = torch.arange(width, device=device).view(1, 1, -1)
    inside = (
        (rows >= top.view(-1, 1, 1))
        & (rows < (top + hole_h).view(-1, 1, 1))
        & (cols >= left.view(-1, 1, 1))
        & (cols < (left + hole_w).view(-1, 1, 1))
        & coin().view(-1, 1, 1)
    )
    pixels = pixels.masked_fill(inside.unsqueeze(1), 0.0)
    return (pixels - 127.5) / 127.5


class ResidentLoader:
    """Batches of `augment_batch(images)` drawn from a split held on `device`.

    Iterates like a drop-last, shuffling DataLoader; under DDP each rank takes its own interleaved
    shard of one shared permutation (what DistributedSampler does). `set_epoch` makes the order
    depend on (seed, epoch) only, so a resumed run sees the same batches.
    """

    def __init__(
        self,
        data: FerData,
        batch_size: int,
        device: torch.device | str,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.images = torch.from_numpy(np.ascontiguousarray(data.images)).to(device)
        # class indices, or the soft-label rows when the data has them
        self.labels = torch.from_numpy(data.labels if data.targets is None else data.targets).to(device)
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (len(self.labels) // self.world_size) // self.batch_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.labels), generator=generator)[self.rank :: self.world_size].to(
            self.images.device
        )
        for step in range(len(self)):
            index = order[step * self.batch_size : (step + 1) * self.batch_size]
            yield augment_batch(self.images[index]), self.labels[index]
