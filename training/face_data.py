"""Face-recognition training data: a folder per identity of aligned 112x112 faces, streamed from disk.

Only the file list lives in memory (a few bytes per image), so the same loader serves
CelebA-299 here and CASIA-WebFace / MS1M-scale folders (hundreds of thousands of
identities, millions of files) on a training machine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from service.pipeline.preprocess import FACE_SIZE, to_face_input

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
UNLABELLED = -1  # faces used only for distillation


@dataclass(frozen=True)
class FaceRecord:
    path: str
    label: int


def scan_identity_folders(root: str | Path) -> tuple[list[FaceRecord], list[str]]:
    """Records for root/<identity>/<image>, identities sorted so labels are reproducible."""
    root = Path(root)
    identities = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    records = []
    for label, identity in enumerate(identities):
        for entry in sorted(os.scandir(root / identity), key=lambda e: e.name):
            if entry.name.lower().endswith(IMAGE_SUFFIXES):
                records.append(FaceRecord(entry.path, label))
    return records, identities


def scan_unlabelled(root: str | Path) -> list[FaceRecord]:
    """Every image below root (any depth), without identity: distillation-only faces."""
    paths = sorted(str(p) for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [FaceRecord(path, UNLABELLED) for path in paths]


def face_train_augmentation() -> A.Compose:
    """Mild augmentation for aligned faces: alignment already fixes the geometry."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(scale=(0.95, 1.05), translate_percent=(-0.03, 0.03), rotate=(-5, 5), p=0.5),
            A.RandomBrightnessContrast(0.2, 0.2, p=0.5),
            A.ToGray(p=0.1),
            A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(16, 32), hole_width_range=(16, 32), p=0.2),
        ]
    )


class FaceDataset(Dataset):
    """Aligned faces -> (input tensor in [-1, 1], label, teacher embedding or NaNs)."""

    def __init__(
        self,
        records: list[FaceRecord],
        augment: A.Compose | None = None,
        teacher: dict[str, np.ndarray] | None = None,
        teacher_dim: int = 0,
    ):
        self.records = records
        self.augment = augment
        self.teacher = teacher or {}
        self.teacher_dim = teacher_dim

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        record = self.records[index]
        image = cv2.imread(record.path, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot decode {record.path}")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if image.shape[:2] != (FACE_SIZE, FACE_SIZE):
            image = cv2.resize(image, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
        if self.augment is not None:
            image = self.augment(image=image)["image"]
        tensor = torch.from_numpy(to_face_input(image[None])[0])
        target = self.teacher.get(record.path)
        if target is None:
            target = np.full(self.teacher_dim, np.nan, np.float32)
        return tensor, record.label, torch.from_numpy(target)


def load_teacher_embeddings(npz_path: str | Path, images_root: str | Path) -> dict[str, np.ndarray]:
    """Teacher descriptors written by `python -m training.teacher`, keyed by absolute path."""
    data = np.load(npz_path)
    root = Path(images_root)
    return {str(root / rel): vec for rel, vec in zip(data["paths"], data["embeddings"])}
