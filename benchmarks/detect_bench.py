"""Face detection: speed per image size and recall against the full-resolution reference.

    python benchmarks/detect_bench.py speed  [--repeats 15]          # old / new / dlib HOG, then the service
    python benchmarks/detect_bench.py recall [--sizes 384 512 640]   # new detector vs full-resolution facenet-pytorch

speed: p50 / p95 per image of the old path (facenet-pytorch MTCNN as the service ran it, longer side
capped at 1280), the new path (stra_face.vision.detect), and dlib's HOG detector upsampled once
(face_recognition's default), on the same images; then /v1/detect and /v1/verify through the
service in process (TestClient, the shipped models). Images: one real photo resized to 480p, 720p,
1080p and 12 MP, and the photo with the most faces in ../shared/data/faces.

recall: every photo of ../shared/data/faces, lfw/raw_sample and cfp/raw_sample. The reference is
facenet-pytorch's MTCNN on the full-resolution image at the server's min_face_size (20) and
threshold (0.9); a face counts as found when a detection overlaps it with IoU >= 0.5. The table counts
all reference faces, those at least as large as the smallest face the detector searches in that
image, and those one pyramid step (1 / 0.709) larger, which the tests require to be found.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / ".." / "shared" / "data"
PHOTO = DATA / "faces" / "examples" / "obama-1080p.jpg"
CROWD = DATA / "faces" / "more" / "insightface" / "lumia.jpg"  # the most faces of ../shared/data/faces
SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080), "12 MP": (4000, 3000)}
MIN_FACE, THRESHOLD = 20, 0.9


def load(path: Path) -> np.ndarray:
    from stra_face.vision.decode import decode_image

    return decode_image(path.read_bytes(), max_bytes=2**30, max_pixels=10**9)


def resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The photo scaled and centre-cropped to exactly `size` (width, height)."""
    import cv2

    width, height = size
    scale = max(width / image.shape[1], height / image.shape[0])
    big = cv2.resize(
        image,
        (round(image.shape[1] * scale), round(image.shape[0] * scale)),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
    )
    top, left = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return np.ascontiguousarray(big[top : top + height, left : left + width])


def old_detector():
    """The service's detector before ONNX: facenet-pytorch MTCNN on a copy capped at 1280 px."""
    import cv2
    import torch
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, min_face_size=MIN_FACE, post_process=False)

    def detect(image: np.ndarray) -> int:
        height, width = image.shape[:2]
        scale = min(1.0, 1280 / max(height, width))
        small = (
            cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
            if scale < 1
            else image
        )
        mtcnn.min_face_size = max(8, round(MIN_FACE * scale))
        with torch.inference_mode():
            boxes, scores = mtcnn.detect(small)
        return (
            0
            if boxes is None
            else sum(s >= THRESHOLD and (b[2] - b[0]) / scale >= MIN_FACE for b, s in zip(boxes, scores))
        )

    return detect


def reference_faces(mtcnn, image: np.ndarray) -> list[np.ndarray]:
    import torch

    with torch.inference_mode():
        boxes, scores = mtcnn.detect(image)
    return (
        []
        if boxes is None
        else [np.asarray(b, np.float32) for b, s in zip(boxes, scores) if s >= THRESHOLD and b[2] - b[0] >= MIN_FACE]
    )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def timed(function, image, repeats: int) -> tuple[float, float, int]:
    found = function(image)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(image)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))], found


def cpu_times() -> list[int]:
    """The machine's CPU time counters (/proc/stat): user, nice, system, idle, iowait, irq, softirq, steal, ..."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]


def machine_check(detector, since: list[int]) -> str:
    """How fast this machine is right now: P-Net over a 480p photo's pyramid (two threads), and the
    share of CPU time the hypervisor took (steal) since the `cpu_times()` given. The same code
    measured 34 ms and 48 ms on the same 2-core machine on one afternoon, so read a table with its check."""
    levels = [np.zeros((1, 3, int(289 * 0.709**k) + 1, int(513 * 0.709**k) + 1), np.float32) for k in range(9)]
    for level in levels:
        detector.pnet.session.run(None, {"input": level})
    times = []
    for _ in range(10):
        start = time.perf_counter()
        for level in levels:
            detector.pnet.session.run(None, {"input": level})
        times.append((time.perf_counter() - start) * 1000)
    now = cpu_times()
    steal = 100 * (now[7] - since[7]) / max(1, sum(now) - sum(since))
    median = statistics.median(times)
    return f"P-Net pyramid of a 480p photo {median:.1f} ms; CPU steal {steal:.1f}% since the previous check"


def speed(args: argparse.Namespace) -> None:
    import dlib
    import torch

    from stra_face.vision.detect import FaceDetector

    torch.set_num_threads(os.cpu_count() or 1)
    new = FaceDetector(MIN_FACE, THRESHOLD, args.detection_size)
    hog = dlib.get_frontal_face_detector()
    bounded = FaceDetector(MIN_FACE, THRESHOLD, args.detection_size, small_faces=False)
    paths = {
        "old (facenet-pytorch)": old_detector(),
        "new (ONNX, size-bounded)": lambda image: len(new.detect(image)),
        "new without the small-face pass": lambda image: len(bounded.detect(image)),
        "dlib HOG (upsample 1)": lambda image: len(hog(image, 1)),
    }
    photo = load(PHOTO)
    images = {name: resized(photo, size) for name, size in SIZES.items()}
    crowd = load(CROWD)
    images[f"crowd {crowd.shape[1]}x{crowd.shape[0]}"] = crowd
    since = cpu_times()
    print(
        f"load average before: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs); repeats {args.repeats}; "
        f"machine check: {machine_check(new, since)}\n"
    )
    print("| image | " + " | ".join(f"{name} p50 / p95 ms (faces)" for name in paths) + " |")
    print("|---|" + "---|" * len(paths))
    for label, image in images.items():
        cells = []
        for function in paths.values():
            repeats = max(3, args.repeats // 5) if "12 MP" in label or "crowd" in label else args.repeats
            p50, p95, found = timed(function, image, repeats)
            cells.append(f"{p50:.0f} / {p95:.0f} ({found})")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}; machine check: {machine_check(new, since)}")
    since = cpu_times()
    service_speed(images, args.repeats)
    print(f"machine check: {machine_check(new, since)}")


def service_speed(images: dict[str, np.ndarray], repeats: int) -> None:
    import cv2
    from fastapi.testclient import TestClient

    from stra_face.service.app import create_app
    from stra_face.service.settings import Settings

    def jpeg(image: np.ndarray) -> bytes:
        return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()

    settings = Settings(gallery_path=Path("/tmp/detect_bench_gallery.sqlite3"), providers=["CPUExecutionProvider"])
    with TestClient(create_app(settings)) as client:
        print("\n| through the service (TestClient, p50 / p95 ms) | " + " | ".join(images) + " |")
        print("|---|" + "---|" * len(images))
        for route, fields in (("/v1/detect", ("image",)), ("/v1/verify?threshold=0.5", ("image1", "image2"))):
            cells = []
            for label, image in images.items():
                data = jpeg(image)
                files = {field: (f"{field}.jpg", data, "image/jpeg") for field in fields}

                def call(_, route=route, files=files):
                    response = client.post(route, files=files)
                    assert response.status_code == 200, response.text
                    return len(response.json().get("faces", response.json().get("faces1", [])))

                p50, p95, found = timed(
                    call, None, max(3, repeats // 5) if "12 MP" in label or "crowd" in label else repeats
                )
                cells.append(f"{p50:.0f} / {p95:.0f}")
            print(f"| {route.split('?')[0]} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


def recall_photos(folders: list[str]) -> list[Path]:
    suffixes = {".jpg", ".jpeg", ".png"}
    return [p for folder in folders for p in sorted((DATA / folder).rglob("*")) if p.suffix.lower() in suffixes]


def recall(args: argparse.Namespace) -> None:
    import torch
    from facenet_pytorch import MTCNN
    from tqdm import tqdm

    from stra_face.vision.detect import PYRAMID_FACTOR, FaceDetector

    torch.set_num_threads(os.cpu_count() or 1)
    reference = MTCNN(keep_all=True, min_face_size=MIN_FACE, post_process=False)
    detectors = {str(size): FaceDetector(MIN_FACE, THRESHOLD, size) for size in args.sizes}
    if args.without_small_faces:  # the full-image pass alone, as before the small-face pass
        detectors |= {
            f"{size}, full-image pass only": FaceDetector(MIN_FACE, THRESHOLD, size, small_faces=False)
            for size in args.sizes
        }
    totals = {
        size: {
            "faces": 0,
            "found": 0,
            "asked": 0,
            "asked_found": 0,
            "step": 0,
            "step_found": 0,
            "extra": 0,
            "seconds": 0.0,
        }
        for size in detectors
    }
    reference_seconds = 0.0
    for path in tqdm(recall_photos(args.folders), desc="recall", unit="photo"):
        image = load(path)
        start = time.perf_counter()
        truth = reference_faces(reference, image)
        reference_seconds += time.perf_counter() - start
        for size, detector in detectors.items():
            start = time.perf_counter()
            found = [d.box for d in detector.detect(image)]
            total = totals[size]
            total["seconds"] += time.perf_counter() - start
            smallest = detector.smallest_face(*image.shape[:2])
            hits = [any(iou(face, box) >= 0.5 for box in found) for face in truth]
            asked = [face[2] - face[0] >= smallest for face in truth]
            total["faces"] += len(truth)
            total["found"] += sum(hits)
            total["asked"] += sum(asked)
            total["asked_found"] += sum(h and a for h, a in zip(hits, asked))
            step = [face[2] - face[0] >= smallest / PYRAMID_FACTOR for face in truth]
            total["step"] += sum(step)
            total["step_found"] += sum(h and a for h, a in zip(hits, step))
            total["extra"] += sum(not any(iou(face, box) >= 0.5 for face in truth) for box in found)
            if args.verbose and not all(h for h, a in zip(hits, asked) if a):
                print(f"  {path}: lost a face the request asked for", file=sys.stderr)
    print(
        f"\n{len(recall_photos(args.folders))} photos ({', '.join(args.folders)}); "
        f"reference (facenet-pytorch, full resolution) {reference_seconds:.1f} s; "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| detection_size | reference faces found | those >= the smallest face searched "
        "| those >= one pyramid step above it | extra detections | detector time (s) |"
    )
    print("|---|---|---|---|---|---|")
    for size, total in totals.items():
        print(
            f"| {size} | {total['found']} / {total['faces']} ({100 * total['found'] / max(1, total['faces']):.1f}%) | "
            f"{total['asked_found']} / {total['asked']} | {total['step_found']} / {total['step']} | "
            f"{total['extra']} | {total['seconds']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    speed_parser = commands.add_parser("speed")
    speed_parser.add_argument("--repeats", type=int, default=15)
    speed_parser.add_argument("--detection-size", type=int, default=512)
    recall_parser = commands.add_parser("recall")
    recall_parser.add_argument("--sizes", type=int, nargs="+", default=[384, 512, 640, 800, 100_000])
    recall_parser.add_argument(
        "--folders", nargs="+", default=["faces", "lfw/raw_sample", "cfp/raw_sample"], help="under ../shared/data"
    )
    recall_parser.add_argument(
        "--without-small-faces", action="store_true", help="also each size without the small-face pass"
    )
    recall_parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    (speed if args.command == "speed" else recall)(args)


if __name__ == "__main__":
    main()
