"""Genuine vs impostor cosine-similarity histograms of a calibration set, with its thresholds marked.

    python -m stra_face.training.eval --onnx stra_face/assets/models/dlib_resnet_v1.onnx --cfp ../shared/data/cfp \
        --cfp-protocols FP --calibrate cfp_fp --out runs/bench/cfp_fp     # writes scores_cfp_fp.npz
    PYTHONPATH=$PWD python benchmarks/score_histograms.py runs/bench/cfp_fp/scores_cfp_fp.npz \
        docs/figures/score_histograms.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from stra_face.vision.thresholds import CALIBRATION_FARS, threshold_at_far


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores", type=Path, help="npz with similarities and issame")
    parser.add_argument("out", type=Path)
    parser.add_argument("--title", default="dlib_resnet_v1 on CFP-FP (3500 genuine, 3500 impostor pairs)")
    args = parser.parse_args(argv)
    data = np.load(args.scores)
    similarities, issame = data["similarities"], data["issame"]
    figure, axis = plt.subplots(figsize=(7, 4))
    bins = np.linspace(min(0.6, similarities.min()), 1.0, 101)
    axis.hist(similarities[~issame], bins, alpha=0.6, label="impostor pairs (different people)", color="tab:red")
    axis.hist(similarities[issame], bins, alpha=0.6, label="genuine pairs (same person)", color="tab:blue")
    for far, style in zip(CALIBRATION_FARS, (":", "--", "-", "-.")):
        threshold = threshold_at_far(similarities, issame, far)
        if threshold is not None:
            tar = np.mean(similarities[issame] >= threshold)
            axis.axvline(
                threshold, color="black", linestyle=style, label=f"FAR {far:g}: cosine {threshold:.3f}, TAR {tar:.2f}"
            )
    axis.set(xlabel="cosine similarity", ylabel="pairs", title=args.title)
    axis.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"{args.out}")


if __name__ == "__main__":
    main()
