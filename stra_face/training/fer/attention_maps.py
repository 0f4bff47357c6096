"""Mode-attention maps of a trained StRA model (the paper's Fig. 3 and Fig. 4).

    stra-face attention --checkpoint ../shared/checkpoints/fer2013/resnet50_stra_fer2013_e12_fp16.pt \
        --data ../shared/data/fer2013/fer2013_jpg.npz --out docs/figures --limit 1500

Writes `modes_per_face.png` (Fig. 3 style: one test face per expression with its G mode-coefficient
maps r_ig of the last StRA block) and `modes_distribution.png` (Fig. 4 style: over the whole split, each
mode's mean map and where each mode dominates).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from stra_face.training.fer.data import FerData, FerDataset, load_fer2013
from stra_face.training.fer.trainer import load_checkpoint_model
from stra_face.training.mode_maps import (
    coefficient_maps,
    mode_statistics,
    outputs_and_maps,
    plot_distribution,
    plot_faces,
)
from stra_face.vision.preprocess import EXPRESSIONS


@torch.inference_mode()
def predictions_and_maps(model, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes (N,) and r_ig maps (N, G, H, W) from one pass."""
    logits, maps = outputs_and_maps(model, images, batch_size)
    return logits.argmax(1), maps


def run(args: argparse.Namespace) -> None:
    """Both figures and the per-mode statistics for attention.py's parsed arguments."""
    model, _ = load_checkpoint_model(args.checkpoint)
    data = load_fer2013(args.data).split(args.split)
    picks = np.concatenate(
        [np.flatnonzero(data.labels == label)[: args.faces_per_class] for label in range(len(EXPRESSIONS))]
    )
    faces = FerData(data.images[picks], data.labels[picks], data.usage[picks])
    if args.limit:
        data = data.sample(args.limit)
    args.out.mkdir(parents=True, exist_ok=True)
    predicted, face_maps = predictions_and_maps(model, stacked(faces))
    titles = [f"{EXPRESSIONS[t]} (pred. {EXPRESSIONS[p]})" for t, p in zip(faces.labels, predicted.tolist())]
    plot_faces(faces.images, face_maps, args.out / "modes_per_face.png", titles)
    maps = coefficient_maps(model, stacked(data))
    plot_distribution(maps, data.images.mean(0), args.out / "modes_distribution.png")
    for row in mode_statistics(maps):
        print(
            (
                "mode {mode}: mean r {mean:.3f}, sd within a face {within_face_sd:.3f}, "
                "sd across faces {across_face_sd:.3f}"
            ).format(**row)
        )
    print(
        f"{len(maps)} faces, {maps.shape[1]} modes at {maps.shape[2]}x{maps.shape[3]}: {args.out}/modes_per_face.png, "
        "modes_distribution.png"
    )


def stacked(data: FerData) -> torch.Tensor:
    dataset = FerDataset(data)
    return torch.stack([dataset[i][0] for i in range(len(dataset))])
