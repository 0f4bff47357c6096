"""Mode-attention maps of a trained StRA model (the paper's Fig. 3 and Fig. 4).

    python -m training.attention --checkpoint runs/fer/cpu_stra/best.pt --out runs/fer/cpu_stra/attention

Writes `modes_per_face.png` (Fig. 3 style: each test face with its G mode-coefficient maps r_ig
of the last StRA block) and `modes_distribution.png` (Fig. 4 style: over the whole split, each
mode's mean map and where each mode dominates).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.stra import ModeAttention
from training.fer import DEFAULT_DATA, load_checkpoint_model
from training.fer_data import FerDataset, load_fer2013


class CoefficientRecorder:
    """Collects r_ig maps (B, G, H, W) from the `coefficients_tap` of the model's last mode-attention block."""

    def __init__(self, model: torch.nn.Module):
        blocks = [m for m in model.modules() if isinstance(m, ModeAttention)]
        if not blocks:
            raise ValueError("the model has no mode attention (not an StRA model, or mode_attention=False)")
        self.maps: list[torch.Tensor] = []
        self._handle = blocks[-1].coefficients_tap.register_forward_hook(lambda module, inputs, output: self.maps.append(output.detach().float().cpu()))

    def close(self) -> None:
        self._handle.remove()


@torch.inference_mode()
def coefficient_maps(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    recorder = CoefficientRecorder(model)
    for start in range(0, len(images), batch_size):
        model(images[start:start + batch_size])
    recorder.close()
    return torch.cat(recorder.maps)


def plot_faces(images: np.ndarray, maps: torch.Tensor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faces, groups = maps.shape[:2]
    upsampled = F.interpolate(maps, size=images.shape[1:], mode="bilinear", align_corners=False).numpy()
    figure, axes = plt.subplots(faces, groups + 1, figsize=(1.6 * (groups + 1), 1.6 * faces))
    for row in range(faces):
        axes[row, 0].imshow(images[row], cmap="gray")
        for g in range(groups):
            axes[row, g + 1].imshow(images[row], cmap="gray")
            axes[row, g + 1].imshow(upsampled[row, g], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if row == 0:
                axes[row, g + 1].set_title(f"mode {g}", fontsize=8)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle("r_ig of the last StRA block (Fig. 3 style)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_distribution(maps: torch.Tensor, mean_face: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = maps.shape[1]
    size = mean_face.shape
    mean_maps = F.interpolate(maps.mean(0, keepdim=True), size=size, mode="bilinear", align_corners=False)[0].numpy()
    dominant = maps.argmax(1)  # (N, H, W): which mode responds most at each location
    share = torch.stack([(dominant == g).float().mean(0) for g in range(groups)])
    share = F.interpolate(share[None], size=size, mode="nearest")[0].numpy()
    figure, axes = plt.subplots(2, groups, figsize=(1.7 * groups, 3.6))
    for g in range(groups):
        axes[0, g].imshow(mean_face, cmap="gray")
        axes[0, g].imshow(mean_maps[g], cmap="jet", alpha=0.5)
        axes[0, g].set_title(f"mode {g}: mean r", fontsize=7)
        axes[1, g].imshow(share[g], cmap="magma", vmin=0, vmax=1)
        axes[1, g].set_title("dominant share", fontsize=7)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle(f"spatial distribution of the modes over {len(maps)} faces (Fig. 4 style)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.attention", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a FER checkpoint of an StRA model")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--split", default="PublicTest")
    parser.add_argument("--faces", type=int, default=6)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    model, _ = load_checkpoint_model(args.checkpoint)
    data = load_fer2013(args.data).split(args.split)
    dataset = FerDataset(data)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    maps = coefficient_maps(model, images)
    args.out.mkdir(parents=True, exist_ok=True)
    picks = np.linspace(0, len(data) - 1, args.faces).astype(int)
    plot_faces(data.images[picks], maps[picks], args.out / "modes_per_face.png")
    plot_distribution(maps, data.images.mean(0), args.out / "modes_distribution.png")
    print(f"{len(maps)} faces, {maps.shape[1]} modes at {maps.shape[2]}x{maps.shape[3]}: {args.out}/modes_per_face.png, modes_distribution.png")


if __name__ == "__main__":
    main()
