"""Mode-attention maps of a trained StRA model (the paper's Fig. 3 and Fig. 4).

    stra-face attention --checkpoint ../shared/checkpoints/fer2013/resnet50_stra_fer2013_e12_fp16.pt \
        --data ../shared/data/fer2013/fer2013_jpg.npz --out docs/figures --limit 1500

Writes `modes_per_face.png` (Fig. 3 style: one test face per expression with its G mode-coefficient
maps r_ig of the last StRA block) and `modes_distribution.png` (Fig. 4 style: over the whole split, each
mode's mean map and where each mode dominates).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from stra_face.models.stra import WithModes
from stra_face.training.fer.data import FerData, FerDataset, load_fer2013
from stra_face.training.fer.trainer import load_checkpoint_model
from stra_face.vision.preprocess import EXPRESSIONS


@torch.inference_mode()
def coefficient_maps(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """r_ig maps (N, G, H, W) of the model's last mode-attention block (what the exported `modes` output holds)."""
    return predictions_and_maps(model, images, batch_size)[1]


@torch.inference_mode()
def predictions_and_maps(model, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes (N,) and r_ig maps (N, G, H, W) from one pass."""
    with_modes = WithModes(model).eval()
    predictions, maps = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="modes", leave=False, disable=len(images) <= batch_size):
        logits, coefficients = with_modes(images[start : start + batch_size])
        predictions.append(logits.argmax(1))
        maps.append(coefficients.float())
    return torch.cat(predictions), torch.cat(maps)


def plot_faces(images: np.ndarray, maps: torch.Tensor, path: Path, row_titles: list[str] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faces, groups = maps.shape[:2]
    upsampled = F.interpolate(maps, size=images.shape[1:], mode="bilinear", align_corners=False).numpy()
    figure, axes = plt.subplots(faces, groups + 1, figsize=(1.6 * (groups + 1), 1.6 * faces))
    for row in range(faces):
        axes[row, 0].imshow(images[row], cmap="gray")
        if row_titles:
            axes[row, 0].set_title(row_titles[row], fontsize=7)
        for g in range(groups):
            axes[row, g + 1].imshow(images[row], cmap="gray")
            axes[row, g + 1].imshow(upsampled[row, g], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if row == 0:
                axes[row, g + 1].set_title(f"mode {g}", fontsize=8)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle("r_ig of the last StRA block, 0 (blue) .. 1 (red) (Fig. 3 style)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def mode_statistics(maps: torch.Tensor) -> list[dict[str, float]]:
    """Per mode: mean r, its spatial spread within a face (sd over locations, averaged over faces)
    and its spread across faces (sd of the per-face means). Modes that pick out face parts have a
    large within-face spread; per-image gates have a large across-face one."""
    per_face_mean = maps.mean(dim=(2, 3))  # (N, G)
    within = maps.flatten(2).std(dim=2).mean(0)
    return [
        {
            "mode": g,
            "mean": float(per_face_mean[:, g].mean()),
            "within_face_sd": float(within[g]),
            "across_face_sd": float(per_face_mean[:, g].std()),
        }
        for g in range(maps.shape[1])
    ]


def plot_distribution(maps: torch.Tensor, mean_face: np.ndarray, path: Path) -> None:
    """Row 1: each mode's mean map (own colour scale, range in the title); row 2: the mean of each
    face's map minus that face's mean (where the mode is relatively high within a face, common
    scale); row 3: where each mode is the largest of the G."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = maps.shape[1]
    size = mean_face.shape

    def upsample(grids: torch.Tensor, mode: str = "bilinear") -> np.ndarray:
        return F.interpolate(
            grids[None], size=size, mode=mode, **({"align_corners": False} if mode == "bilinear" else {})
        )[0].numpy()

    mean_grids = maps.mean(0)
    relative = upsample((maps - maps.mean(dim=(2, 3), keepdim=True)).mean(0))
    limit = float(np.abs(relative).max())
    dominant = maps.argmax(1)  # (N, H, W): which mode responds most at each location
    share = upsample(torch.stack([(dominant == g).float().mean(0) for g in range(groups)]), "nearest")
    stats = mode_statistics(maps)
    figure, axes = plt.subplots(3, groups, figsize=(1.8 * groups, 6.0))
    for g in range(groups):
        axes[0, g].imshow(mean_face, cmap="gray")
        axes[0, g].imshow(upsample(mean_grids)[g], cmap="jet", alpha=0.5)
        axes[0, g].set_title(
            f"mode {g}: mean r {float(mean_grids[g].min()):.2f}-{float(mean_grids[g].max()):.2f}\n"
            f"sd in face {stats[g]['within_face_sd']:.3f}, across {stats[g]['across_face_sd']:.3f}",
            fontsize=6,
        )
        axes[1, g].imshow(mean_face, cmap="gray")
        axes[1, g].imshow(relative[g], cmap="coolwarm", alpha=0.6, vmin=-limit, vmax=limit)
        axes[1, g].set_title(f"r - face mean (+-{limit:.3f})", fontsize=6)
        axes[2, g].imshow(share[g], cmap="magma", vmin=0, vmax=1)
        axes[2, g].set_title("share where largest", fontsize=6)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle(f"spatial distribution of the modes over {len(maps)} faces (Fig. 4 style)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


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
