"""The crowd photo (faces/more/insightface/lumia.jpg): reference faces (facenet-pytorch at full
resolution, 20 px, score >= 0.9) found with IoU >= 0.5, by face size, with and without the
small-face pass, the crops that reach R-Net and O-Net (what most of the time goes to), and p50 / max ms of
`--repeats` runs in process (`--repeats 21` for a timing table).

    python benchmarks/crowd_recall.py
"""

from __future__ import annotations

import statistics
import sys
import time
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.detect_bench import CROWD, MIN_FACE, THRESHOLD, iou, load, reference_faces

EDGES = [20, 28, 37.5, 53, 10**4]  # 37.5 px: the whole-image pass's smallest face on this photo


def main() -> None:
    import argparse

    import torch
    from facenet_pytorch import MTCNN

    from stra_face.vision.detect import FaceDetector

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    image = load(CROWD)
    torch.set_num_threads(2)
    reference = reference_faces(MTCNN(keep_all=True, min_face_size=MIN_FACE, post_process=False), image)
    sizes = [face[2] - face[0] for face in reference]
    print(
        "| small-face pass | found | "
        + " | ".join(f"{lo}-{hi} px" for lo, hi in pairwise(EDGES))
        + " | extra | R-Net / O-Net crops | p50 / max ms |"
    )
    print("|---|---|" + "---|" * (len(EDGES) - 1) + "---|---|---|")
    for small_faces in (False, True):
        detector = FaceDetector(MIN_FACE, THRESHOLD, small_faces=small_faces)
        cascade = detector.propose(image)  # also the warm-up
        rnet_crops = len(cascade.crops)
        onet_crops = len(detector.refine(cascade, detector.run_rnet(cascade.crops)).crops)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            found = [d.box for d in detector.detect(image)]
            times.append(1000 * (time.perf_counter() - start))
        hits = [any(iou(face, box) >= 0.5 for box in found) for face in reference]
        cells = [
            f"{sum(h for h, s in zip(hits, sizes) if lo <= s < hi)} / {sum(lo <= s < hi for s in sizes)}"
            for lo, hi in pairwise(EDGES)
        ]
        extra = sum(not any(iou(face, box) >= 0.5 for face in reference) for box in found)
        print(
            f"| {'with' if small_faces else 'without'} | {sum(hits)} / {len(reference)} | "
            + " | ".join(cells)
            + f" | {extra} | {rnet_crops} / {onet_crops} | {statistics.median(times):.0f} / {max(times):.0f} |"
        )


if __name__ == "__main__":
    main()
