"""Open-set identification on identity folders: DIR at FPIR, and whether the service's FPIR model holds.

    stra-face calibrate runs/lfw_ac --max-images-per-person 10 --save-embeddings runs/lfw_ac.npz --out runs/cal.json
    PYTHONPATH=$PWD python benchmarks/open_set.py runs/lfw_ac.npz \\
        --thresholds-file stra_face/assets/models/thresholds.json

Protocol: of the people with two or more photos, half (seeded) are enrolled with their first photo (one
gallery face each); their other photos are mated probes; every photo of everyone else (never enrolled)
is a non-mated probe. A probe's answer is its best gallery face. FPIR(t): share of non-mated probes whose
best score is >= t; DIR(t) (detection and identification rate): share of mated probes whose best face is
their own and scores >= t. Two kinds of row:
- measured: t chosen on these non-mated probes for the FPIR (the best the model can do here);
- service: t as /v1/identify sets it from the calibration file (FAR = FPIR / gallery faces) and the
  FPIR it actually gives here: does the stated FPIR hold on people the calibration never saw?
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from stra_face.service.settings import Settings
from stra_face.vision.cards import sha256_file
from stra_face.vision.thresholds import load_calibration

FPIRS = (0.01, 0.05, 0.1)


def split(people: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gallery photo indices, mated probe indices, non-mated probe indices)."""
    names, counts = np.unique(people, return_counts=True)
    repeated = names[counts >= 2]
    enrolled = set(np.random.default_rng(seed).permutation(repeated)[: len(repeated) // 2])
    gallery, mated, non_mated, seen = [], [], [], set()
    for index, person in enumerate(people):
        if person not in enrolled:
            non_mated.append(index)
        elif person in seen:
            mated.append(index)
        else:
            seen.add(person)
            gallery.append(index)
    return np.array(gallery), np.array(mated), np.array(non_mated)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("embeddings", type=Path, help="npz written by `stra-face calibrate --save-embeddings`")
    parser.add_argument("--thresholds-file", type=Path, default=Settings().thresholds_file)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = np.load(args.embeddings)
    people, embeddings = data["people"], data["embeddings"]
    gallery, mated, non_mated = split(people, args.seed)
    scores = embeddings @ embeddings[gallery].T  # (photos, gallery faces)
    best, best_score = scores.argmax(axis=1), scores.max(axis=1)
    correct = people[gallery][best] == people
    calibration = load_calibration(args.thresholds_file, sha256_file(Settings().embedding_model))
    print(
        f"{len(gallery)} enrolled (one face each), {len(mated)} mated probes, {len(non_mated)} non-mated probes; "
        f"rank-1 accuracy of mated probes {correct[mated].mean():.4f}"
    )
    print("| FPIR asked | threshold from | cosine threshold | FPIR measured | DIR |")
    print("| --- | --- | --- | --- | --- |")
    for fpir in FPIRS:
        impostor_best = np.sort(best_score[non_mated])[::-1]
        allowed = int(np.floor(fpir * len(impostor_best)))
        rows = (
            [("these non-mated probes", float(np.nextafter(impostor_best[allowed], np.inf)))]
            if allowed < len(impostor_best)
            else []
        )
        if calibration is not None and calibration.threshold_at_far(fpir / len(gallery)) is not None:
            threshold, far = calibration.threshold_at_far(fpir / len(gallery))
            stated = min(1.0, far * len(gallery))
            rows.append((f"calibration, FAR {far:.2g} (stated FPIR {stated:.3g})", threshold))
        for source, threshold in rows:
            measured = float(np.mean(best_score[non_mated] >= threshold))
            dir_ = float(np.mean(correct[mated] & (best_score[mated] >= threshold)))
            print(f"| {fpir:g} | {source} | {threshold:.4f} | {measured:.4f} | {dir_:.4f} |")


if __name__ == "__main__":
    main()
