"""Detection time before / after a change, interleaved in one process (the same moment for both, so
a shared machine's swings cancel out): the detector of another checkout against this one's.

    git archive d136582 | (mkdir -p /tmp/before && tar -x -C /tmp/before)
    python benchmarks/detect_ab.py --before /tmp/before [--repeats 15]

Images as `detect_bench.py speed`: `examples/obama-1080p.jpg` resized to 480p, 720p, 1080p and 12 MP, and
the crowd photo; p50 ms per image (faces found in brackets) at the server's defaults.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.detect_bench import CROWD, MIN_FACE, PHOTO, SIZES, THRESHOLD, load, resized


def detector_module(checkout: Path):
    """`stra_face/vision/detect.py` of another checkout, imported under its own name (its models: this checkout's
    MTCNN files, which no change here touched)."""
    spec = importlib.util.spec_from_file_location("detect_before", checkout / "stra_face" / "vision" / "detect.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["detect_before"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the code before the change")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    from stra_face.vision.detect import MODELS, FaceDetector

    detectors = {
        "before": detector_module(args.before).FaceDetector(MIN_FACE, THRESHOLD, models=MODELS),
        "after": FaceDetector(MIN_FACE, THRESHOLD),
    }
    photo = load(PHOTO)
    images = {name: resized(photo, size) for name, size in SIZES.items()}
    crowd = load(CROWD)
    images[f"crowd {crowd.shape[1]}x{crowd.shape[0]}"] = crowd
    print(f"load average {os.getloadavg()[0]:.1f}; {args.repeats} runs each (a third on 12 MP and the crowd)\n")
    print("| image | before p50 ms (faces) | after p50 ms (faces) | change |")
    print("| --- | --- | --- | --- |")
    for label, image in images.items():
        repeats = max(3, args.repeats // 3) if "12 MP" in label or "crowd" in label else args.repeats
        faces = {name: len(detector.detect(image)) for name, detector in detectors.items()}  # also the warm-up
        times: dict[str, list[float]] = {name: [] for name in detectors}
        for _ in range(repeats):
            for name, detector in detectors.items():
                start = time.perf_counter()
                detector.detect(image)
                times[name].append(1000 * (time.perf_counter() - start))
        before, after = statistics.median(times["before"]), statistics.median(times["after"])
        change = 100 * (after / before - 1)
        print(
            f"| {label} | {before:.0f} ({faces['before']}) | {after:.0f} ({faces['after']}) | {change:+.0f}% |",
            flush=True,
        )
    print(f"\nload average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
