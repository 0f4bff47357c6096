"""Mode-attention maps of any trained StRA model, and the paper's two figures of them (Figs. 3-4).

The expression model's (`stra_face.training.fer.attention_maps`) and the face model's
(`stra_face.training.face.mode_maps`) figures are drawn here, on grey or colour faces alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from stra_face.models.stra import WithModes


@torch.inference_mode()
def coefficient_maps(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """r_ig maps (N, G, H, W) of the model's last mode-attention block (what the exported `modes` output holds)."""
    return outputs_and_maps(model, images, batch_size)[1]


@torch.inference_mode()
def outputs_and_maps(model, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's outputs (N, ...) and r_ig maps (N, G, H, W) from one pass."""
    with_modes = WithModes(model).eval()
    outputs, maps = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="modes", leave=False, disable=len(images) <= batch_size):
        output, coefficients = with_modes(images[start : start + batch_size])
        outputs.append(output.float())
        maps.append(coefficients.float())
    return torch.cat(outputs), torch.cat(maps)


def plot_faces(images: np.ndarray, maps: torch.Tensor, path: Path, row_titles: list[str] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faces, groups = maps.shape[:2]
    upsampled = F.interpolate(maps, size=images.shape[1:3], mode="bilinear", align_corners=False).numpy()
    figure, axes = plt.subplots(faces, groups + 1, figsize=(1.6 * (groups + 1), 1.6 * faces))
    for row in range(faces):
        axes[row, 0].imshow(images[row], cmap="gray")  # colour faces ignore the cmap
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
    size = mean_face.shape[:2]

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
