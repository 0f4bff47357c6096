"""Mode-attention maps of a trained StRA face model on CFP faces: the paper's Figs. 3-4, for faces.

    python -m stra_face.training.face modes --checkpoint runs/face/cpu_mnv2_stra/best.pt --out docs/figures

Writes `<prefix>_per_face.png` (Fig. 3 style: frontal and profile photos of the same CFP people, each
with the G maps r_ig of the last StRA block) and `<prefix>_distribution.png` (Fig. 4 style: over
frontal CFP faces, each mode's mean map and where it is the largest), and returns each mode's statistics.
CFP is a benchmark, never trained on; the figures only look at it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from stra_face.training.eval.embedders import load_checkpoint_model
from stra_face.training.mode_maps import coefficient_maps, mode_statistics, plot_distribution, plot_faces
from stra_face.vision.preprocess import to_face_input


def read_faces(paths: list[Path]) -> np.ndarray:
    return np.stack([cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in paths])


def cfp_views(root: Path, people: list[str], view: str, per_person: int) -> list[Path]:
    """The first `per_person` aligned photos of each person's `view` ("frontal" or "profile")."""
    return [path for person in people for path in sorted((root / person / view).glob("*.jpg"))[:per_person]]


def run(
    checkpoint: Path, cfp: Path, out: Path, people: int = 4, limit: int = 1000, prefix: str = "face_modes"
) -> list[dict]:
    model, _ = load_checkpoint_model(checkpoint)
    root = cfp / "aligned112"
    everyone = sorted(p.name for p in root.iterdir() if p.is_dir())
    shown = everyone[:: max(1, len(everyone) // people)][:people]
    paths = [path for person in shown for view in ("frontal", "profile") for path in cfp_views(root, [person], view, 1)]
    faces = read_faces(paths)
    titles = [f"CFP {path.parent.parent.name} {path.parent.name}" for path in paths]
    out.mkdir(parents=True, exist_ok=True)
    plot_faces(
        faces, coefficient_maps(model, torch.from_numpy(to_face_input(faces))), out / f"{prefix}_per_face.png", titles
    )
    frontal = cfp_views(root, everyone, "frontal", max(1, -(-limit // len(everyone))))[:limit]
    images = read_faces(frontal)
    maps = coefficient_maps(model, torch.from_numpy(to_face_input(images)))
    plot_distribution(maps, images.mean(0).astype(np.uint8), out / f"{prefix}_distribution.png")
    return mode_statistics(maps)
