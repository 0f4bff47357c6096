"""The crowd photo (faces/more/insightface/lumia.jpg): reference faces (facenet-pytorch, full resolution, 20 px, 0.9) found by size, with and
without the small-face pass, and p50 / max ms of 5 runs in process.

    python benchmarks/crowd_recall.py
"""
import sys, time, statistics, numpy as np
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
from facenet_pytorch import MTCNN
from stra_face.vision.detect import FaceDetector
from benchmarks.detect_bench import load, CROWD, reference_faces, iou
img = load(CROWD)
torch.set_num_threads(2)
ref = reference_faces(MTCNN(keep_all=True, min_face_size=20, post_process=False), img)
print("| small-face pass | found | 20-28 px | 28-37.5 px | 37.5-53 px | >= 53 px | extra | p50 / max ms |")
print("|---|---|---|---|---|---|---|---|")
edges = [20, 28, 37.5, 53, 10**4]
for flag in (False, True):
    d = FaceDetector(20, 0.9, small_faces=flag)
    d.detect(img); ts = []
    for _ in range(5):
        t = time.perf_counter(); got = [x.box for x in d.detect(img)]; ts.append(1000 * (time.perf_counter() - t))
    hits = [any(iou(r, g) >= 0.5 for g in got) for r in ref]
    sizes = [r[2] - r[0] for r in ref]
    cells = [f"{sum(h for h, s in zip(hits, sizes) if lo <= s < hi)} / {sum(lo <= s < hi for s in sizes)}" for lo, hi in zip(edges, edges[1:])]
    extra = sum(not any(iou(r, g) >= 0.5 for r in ref) for g in got)
    print(f"| {'with' if flag else 'without'} | {sum(hits)} / {len(ref)} | " + " | ".join(cells) + f" | {extra} | {statistics.median(ts):.0f} / {max(ts):.0f} |")
