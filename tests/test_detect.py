"""The ONNX MTCNN detector against facenet-pytorch (its reference) on real photos, and its batching."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from stra_face.vision.align import similarity_transform
from stra_face.vision.decode import decode_image
from stra_face.vision.detect import (
    MODELS,
    PNET_WINDOW,
    PYRAMID_FACTOR,
    SMALL_FACE_GATE,
    FaceDetector,
    nms,
    small_face_regions,
)
from stra_face.vision.inference import MicroBatcher, sha256_file
from tests.conftest import FACES, SHARED_DATA, need

MIN_FACE, THRESHOLD = 20, 0.9  # the server's defaults, which the reference runs at


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(MIN_FACE, THRESHOLD)


@pytest.fixture(scope="module")
def reference():
    """facenet-pytorch's MTCNN on the full-resolution image: path -> [(box, score, landmarks)] at the default
    threshold."""
    pytest.importorskip("facenet_pytorch")
    import torch
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, min_face_size=MIN_FACE, post_process=False)
    cache: dict[Path, list] = {}

    def faces(path: Path, image: np.ndarray) -> list:
        if path not in cache:
            with torch.inference_mode():
                boxes, scores, landmarks = mtcnn.detect(image, landmarks=True)
            cache[path] = (
                []
                if boxes is None
                else [
                    (np.asarray(b, np.float32), float(s), np.asarray(p, np.float32))
                    for b, s, p in zip(boxes, scores, landmarks)
                    if s >= THRESHOLD and b[2] - b[0] >= MIN_FACE
                ]
            )
        return cache[path]

    return faces


def photos(folder: Path) -> list[Path]:
    return sorted(p for p in need(folder).rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


def iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def load(path: Path) -> np.ndarray:
    return decode_image(path.read_bytes(), max_bytes=2**30, max_pixels=10**9)


# --------------------------------------------------------------------------- the shipped networks


def test_mtcnn_files_match_their_card():
    card = json.loads((MODELS / "mtcnn.card.json").read_text())
    for name in ("pnet", "rnet", "onet"):
        entry = card["files"][name]
        path = MODELS / entry["file"]
        assert sha256_file(path) == entry["sha256"] and path.stat().st_size == entry["size_bytes"] < 2**21
        assert entry["parity_max_abs_error"] <= 1e-4


@pytest.mark.slow
def test_onnx_networks_are_facenet_pytorchs_own(detector):
    """The shipped files compute what facenet-pytorch's modules compute (P-Net at sizes it was not exported at)."""
    pytest.importorskip("facenet_pytorch")
    import facenet_pytorch.models.mtcnn as mtcnn

    from stra_face.training.export.onnx_export import check_parity

    assert check_parity(mtcnn.PNet(), MODELS / "mtcnn_pnet.onnx", (3, 31, 77)) < 1e-4
    assert check_parity(mtcnn.RNet(), MODELS / "mtcnn_rnet.onnx", (3, 24, 24)) < 1e-4
    assert check_parity(mtcnn.ONet(), MODELS / "mtcnn_onet.onnx", (3, 48, 48)) < 1e-4


def test_detection_needs_no_torch():
    """The torch-free image: the detector module imports neither torch nor facenet-pytorch."""
    import subprocess
    import sys

    code = (
        "import sys; import stra_face.vision.detect, stra_face.service.app; "
        "print(sorted({'torch', 'facenet_pytorch', 'torchvision'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "[]"


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 4, 4]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.95], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [3, 1, 2]  # box 1 removes box 0 (IoU 0.68)
    # "min": box 3 lies inside box 0 (overlap over the smaller 1.0); box 1 overlaps 16 of box 3's 25 px
    assert nms(boxes, scores, 0.7, method="min").tolist() == [3, 1, 2]
    assert len(nms(np.empty((0, 4), np.float32), np.empty(0, np.float32), 0.5)) == 0


def greedy_iou_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Textbook greedy NMS, ties in input order (torch's sort, as the reference's first two stages)."""
    order, keep = list(np.argsort(-scores, kind="stable")), []
    while order:
        best = order.pop(0)
        keep.append(int(best))
        order = [i for i in order if iou(boxes[best], boxes[i]) <= threshold]
    return keep


def greedy_min_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy "min" NMS (+1 pixel areas), ties broken as the reference does where its sort is stable: last index
    first."""
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    order, keep = sorted(range(len(scores)), key=lambda i: (-scores[i], -i)), []
    while order:
        best = order.pop(0)
        keep.append(best)
        overlap = [
            max(0.0, min(boxes[best, 2], boxes[i, 2]) - max(boxes[best, 0], boxes[i, 0]) + 1)
            * max(0.0, min(boxes[best, 3], boxes[i, 3]) - max(boxes[best, 1], boxes[i, 1]) + 1)
            / min(areas[best], areas[i])
            for i in order
        ]
        order = [i for i, o in zip(order, overlap) if o <= threshold]
    return keep


def test_min_nms_breaks_exact_ties_by_index_on_every_cpu():
    """Identical O-Net crops give exactly equal scores (a crowd photo has dozens of such pairs); which
    box wins must not depend on how the CPU's SIMD sort orders ties (numpy's default argsort does, for
    arrays of more than 16 values), so faces and landmarks are the same on every machine."""
    rng = np.random.default_rng(1)
    corner = rng.integers(0, 60, (300, 2)).astype(np.float64)
    boxes = np.concatenate([corner, corner + rng.choice([10.0, 14.0], 300)[:, None]], axis=1)
    scores = rng.choice([0.8, 0.9, 0.95], 300).astype(np.float32)
    assert nms(boxes, scores, 0.7, method="min").tolist() == greedy_min_nms(boxes, scores, 0.7)


@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_union_nms_is_textbook_greedy_nms(threshold):
    """OpenCV's NMS, run per group of boxes whose areas are too different to overlap beyond the
    threshold, picks what plain greedy NMS picks: boxes of several sizes (as from several pyramid
    levels), many overlapping, with exact score ties."""
    rng = np.random.default_rng(0)
    side = rng.choice([12.0, 17.0, 24.0, 34.0], 400)
    corner = rng.integers(0, 120, (400, 2)).astype(np.float64)
    boxes = np.concatenate([corner, corner + side[:, None]], axis=1)
    scores = rng.choice([0.6, 0.75, 0.9, 1.0], 400).astype(np.float32)
    assert nms(boxes, scores, threshold).tolist() == greedy_iou_nms(boxes, scores, threshold)


@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_sparse_nms_keeps_what_opencv_keeps(threshold):
    """The NMS of large groups (thousands of crowd candidates), which compares overlapping pairs only, keeps
    exactly what OpenCV's NMSBoxes keeps, in the same order: fractional boxes of nearly equal sizes packed
    so that most overlap, exact score ties, boxes that only touch; and through `nms` it is textbook greedy NMS."""
    import cv2

    from stra_face.vision.detect import SPARSE_NMS_FROM, _nms_sparse

    rng = np.random.default_rng(2)
    count = 3000
    side = rng.choice([18.0, 18.3, 19.0, 25.0], count)
    corner = np.round(rng.uniform(0, 250, (count, 2)), 1)
    corner[:50, 0] = corner[50:100, 0] + side[50:100]  # boxes that touch a neighbour's right edge
    rects = np.concatenate([corner, side[:, None], side[:, None]], axis=1)
    scores = rng.choice([0.6, 0.75, 0.9, 0.97, 1.0], count).astype(np.float32)
    expected = np.asarray(cv2.dnn.NMSBoxes(rects, scores, 0.0, threshold), np.int64).reshape(-1)
    kept = _nms_sparse(rects, scores, threshold)
    assert len(expected) < 0.8 * count and kept.tolist() == expected.tolist()
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)[: SPARSE_NMS_FROM + 200]
    assert nms(boxes, scores[: len(boxes)], threshold).tolist() == greedy_iou_nms(
        boxes, scores[: len(boxes)], threshold
    )


def test_no_face_in_a_blank_or_tiny_image(detector):
    assert detector.detect(np.full((200, 200, 3), 128, np.uint8)) == []
    assert detector.detect(np.full((8, 8, 3), 128, np.uint8)) == []


def test_smallest_face_is_in_original_pixels(detector):
    """Default: the server's floor, raised on large images; a request's own size is kept as asked."""
    assert detector.smallest_face(480, 854) == MIN_FACE * max(1.0, 12 * 854 / detector.detection_size / MIN_FACE)
    assert detector.smallest_face(3000, 4000) == pytest.approx(12 * 4000 / detector.detection_size)
    assert detector.smallest_face(3000, 4000, 24) == 24


def test_small_face_regions_surround_the_flagged_cells():
    """One flagged cell: a region holding its window grown by a window's half and a cell; none: no
    region; most of the map: the whole image, once."""
    scale = 0.32  # a 1600 px wide image at detection_size 512
    probabilities = np.zeros((139, 252), np.float32)
    assert small_face_regions(probabilities, scale, 898, 1600) == []
    probabilities[50, 100] = SMALL_FACE_GATE
    [(x1, y1, x2, y2)] = small_face_regions(probabilities, scale, 898, 1600)
    window = (2 * 100 / scale, 2 * 50 / scale, (2 * 100 + PNET_WINDOW) / scale, (2 * 50 + PNET_WINDOW) / scale)
    grow = (PNET_WINDOW / 2 + 2) / scale
    assert x1 <= window[0] - grow and y1 <= window[1] - grow and x2 >= window[2] + grow and y2 >= window[3] + grow
    assert x2 - x1 <= window[2] - window[0] + 2 * grow + 2
    probabilities[:, :200] = 1.0
    assert small_face_regions(probabilities, scale, 898, 1600) == [(0, 0, 1600, 898)]


def test_small_face_pass_keeps_a_portraits_faces_and_a_requests_size():
    """On a 1080p portrait the small-face pass finds what the full-image pass finds (no extra faces);
    a request's own min_face_size turns it off (the whole image is searched at that size)."""
    image = load(need(FACES / "examples/obama-1080p.jpg"))
    with_pass, without = FaceDetector(MIN_FACE, THRESHOLD), FaceDetector(MIN_FACE, THRESHOLD, small_faces=False)
    found, expected = with_pass.detect(image), without.detect(image)
    assert len(found) == len(expected) == 1 and iou(found[0].box, expected[0].box) > 0.95
    assert with_pass.propose(image, 60).boxes.tolist() == without.propose(image, 60).boxes.tolist()


@pytest.mark.slow
def test_small_face_pass_has_a_setting(monkeypatch, make_client):
    """STRA_SMALL_FACES=false turns the small-face pass off for the service (and the Python API, which reads
    the same settings): the crowd photo then gives exactly what the whole-image pass gives, and with the pass
    on (the default) it gives many more faces."""
    from stra_face.analyzer import FaceAnalyzer
    from stra_face.config import PipelineSettings
    from stra_face.service.settings import Settings

    assert PipelineSettings().small_faces is True
    monkeypatch.setenv("STRA_SMALL_FACES", "false")
    assert PipelineSettings().small_faces is False and Settings().small_faces is False
    assert FaceAnalyzer(providers=["CPUExecutionProvider"]).detector.small_faces is False
    monkeypatch.delenv("STRA_SMALL_FACES")
    path = need(FACES / "more/insightface/lumia.jpg")
    found = {}
    for small_faces in (True, False):
        client = make_client(small_faces=small_faces, max_faces=500)
        assert client.app.state.service.detector.small_faces is small_faces
        files = {"image": ("lumia.jpg", path.read_bytes(), "image/jpeg")}
        found[small_faces] = client.post("/v1/detect?keep_low_quality=true", files=files).json()["faces_found"]
    whole_image_pass = FaceDetector(MIN_FACE, THRESHOLD, small_faces=False).detect(load(path))
    assert found[False] == len(whole_image_pass) < 40 and found[True] >= len(whole_image_pass) + 80


@pytest.mark.slow
def test_crowd_photo_keeps_its_small_faces(detector, reference):
    """At the server's defaults the crowd photo (1600x898: the full-image pass searches 37.5 px faces)
    gives at least 120 of the faces of 20 px and up that the full-resolution reference finds, and few others."""
    path = need(FACES / "more/insightface/lumia.jpg")
    image = load(path)
    expected = [box for box, _, _ in reference(path, image)]
    found = [d.box for d in detector.detect(image)]
    matched = sum(any(iou(box, other) >= 0.5 for other in found) for box in expected)
    assert len(expected) >= 130 and matched >= 120, (matched, len(expected))
    assert len(found) - matched <= 0.1 * len(expected)
    assert min(box[2] - box[0] for box in found) < 0.8 * detector.smallest_face(*image.shape[:2])


# --------------------------------------------------------------------------- against facenet-pytorch on real photos


@pytest.mark.slow
def test_same_faces_and_landmarks_as_facenet_pytorch_on_every_photo(detector, reference):
    """Asked for the reference's smallest face, the detector finds the same faces (IoU >= 0.5 both ways)
    with landmarks within 1 px once aligned to 112x112; it runs every photo of ../shared/data/faces.

    Faces whose score is an exact tie are matched by box only, at IoU >= 0.8: several candidate boxes
    that truncate to the same pixels (or are clipped alike at the image border) give the very same
    O-Net crop and score, and which of them facenet-pytorch keeps follows the order its unstable
    `np.argsort` gives ties, which depends on the CPU's SIMD (lumia.jpg: 2.3 px apart on one x86-64
    machine, identical on another). The detector itself breaks ties by index on every CPU."""
    worst = 0.0
    for path in photos(FACES):
        image = load(path)
        expected = reference(path, image)
        found = detector.detect(image, MIN_FACE, THRESHOLD)
        assert len(found) == len(expected), path
        for box, score, landmarks in expected:
            match = max(found, key=lambda d: iou(d.box, box))
            assert iou(match.box, box) >= 0.5, (path, box)
            assert match.score == pytest.approx(score, abs=1e-3)
            matrix = similarity_transform(landmarks)
            error = float(np.abs(match.landmarks - landmarks).max() * np.hypot(matrix[0, 0], matrix[0, 1]))
            if error > 1.0:  # allowed only where the reference's pick among exact ties depends on the CPU
                assert match.score in tied_scores(detector, image) and iou(match.box, box) >= 0.8, (path, error)
                continue
            worst = max(worst, error)
    print(f"worst landmark difference at 112x112: {worst:.3g} px")


def tied_scores(detector: FaceDetector, image: np.ndarray) -> set[float]:
    """The O-Net scores that two or more of an image's final candidates share exactly."""
    cascade = detector.propose(image, MIN_FACE)
    if len(cascade.crops):
        cascade = detector.refine(cascade, detector.run_rnet(cascade.crops))
    if not len(cascade.crops):
        return set()
    values, counts = np.unique(detector.run_onet(cascade.crops)[:, 15], return_counts=True)
    return {float(v) for v in values[counts > 1]}


def labelled_counts() -> dict[Path, int]:
    """Faces per photo where faces/labels.tsv gives a count ("2 faces", "single face", MULTI:a,b)."""
    counts = {}
    for line in need(FACES / "labels.tsv").read_text().splitlines()[1:]:
        path, identity, note = (line.split("\t") + ["", ""])[:3]
        names = identity[len("MULTI:") :].split(",") if identity.startswith("MULTI:") else []
        number = re.match(r"(\d+) faces", note)
        if number or len(names) > 1 or "single face" in note:
            counts[FACES / path] = int(number.group(1)) if number else max(1, len(names))
    return counts


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["faces", "lfw/raw_sample", "cfp/raw_sample"])
def test_no_face_lost_that_the_full_resolution_reference_finds(detector, reference, folder):
    """At the server's defaults (detection on a size-bounded pyramid), every face the full-resolution
    reference finds is found when it is one pyramid step above the smallest face searched for (right
    at that size MTCNN itself finds some faces and misses others); labelled counts are met."""
    counts = labelled_counts() if folder == "faces" else {}
    lost, asked = [], 0
    for path in photos(SHARED_DATA / folder):
        image = load(path)
        found = [d.box for d in detector.detect(image)]
        smallest = detector.smallest_face(*image.shape[:2]) / PYRAMID_FACTOR
        for box, _, _ in reference(path, image):
            if box[2] - box[0] >= smallest:
                asked += 1
                if not any(iou(box, other) >= 0.5 for other in found):
                    lost.append((path.name, box.round().tolist()))
        assert len(found) >= counts.get(path, 0), path
    assert asked > 0 and lost == [], lost


# --------------------------------------------------------------------------- batching across requests


def test_concurrent_images_share_one_rnet_and_one_onet_call(detector):
    """The service's three-step detection gives each image what `detect` gives it, with the R-Net and
    O-Net crops of all waiting images in one call each."""
    from stra_face.service.analysis import DetectionOptions, analyze_image
    from stra_face.service.limits import Admission
    from stra_face.vision.preprocess import ARCFACE_112
    from stra_face.vision.quality import QualityGate

    paths = [FACES / "examples/two_people.jpg", FACES / "examples/obama-480p.jpg", FACES / "more/insightface/t1.jpg"]
    data = [need(path).read_bytes() for path in paths]
    calls = {"rnet": [], "onet": []}
    # Each batcher flushes once it holds every image's crops (its max_size), however slow the machine.
    cascades = [detector.propose(load(path)) for path in paths]
    rnet_total = sum(len(c.crops) for c in cascades)
    onet_total = sum(len(detector.refine(c, detector.run_rnet(c.crops)).crops) for c in cascades)

    def spy(name, function):
        def run(crops):
            calls[name].append(len(crops))
            return function(crops)

        return run

    async def main():
        state = SimpleNamespace(
            detector=detector,
            settings=SimpleNamespace(
                max_image_bytes=2**30, max_image_pixels=10**9, max_faces=64, flip_expressions=True
            ),
            embedder=SimpleNamespace(input_kind=ARCFACE_112),
            embed_batcher=None,
            expression_batcher=None,
            metrics=SimpleNamespace(faces=SimpleNamespace(inc=lambda count: None)),
            admission=Admission(1, max_pixels=10**12),
            quality_gate=QualityGate(),
            rnet_batcher=MicroBatcher(spy("rnet", detector.run_rnet), rnet_total, 60_000.0, 65536),
            onet_batcher=MicroBatcher(spy("onet", detector.run_onet), onet_total, 60_000.0, 65536),
        )
        for batcher in (state.rnet_batcher, state.onet_batcher):
            await batcher.start()
        # every face the detector finds, to compare with `detect` (the quality gate is tested in test_decisions)
        results = await asyncio.gather(
            *(analyze_image(state, d, DetectionOptions(keep_low_quality=True)) for d in data)
        )
        for batcher in (state.rnet_batcher, state.onet_batcher):
            await batcher.stop()
        return results

    results = asyncio.run(main())
    assert calls == {"rnet": [rnet_total], "onet": [onet_total]}
    for path, result in zip(paths, results):
        alone = detector.detect(load(path))
        assert [d.box.tolist() for d in result.detections] == [d.box.tolist() for d in alone]
        assert [d.landmarks.tolist() for d in result.detections] == [d.landmarks.tolist() for d in alone]
    assert [len(r.detections) for r in results] == [2, 1, 6]


# --------------------------------------------------------------------------- STRA_MAX_FACES in responses


def test_responses_say_when_max_faces_cut_the_list(make_client):
    crowd, portrait = (
        need(FACES / "more/insightface/t1.jpg").read_bytes(),
        need(FACES / "examples/obama-480p.jpg").read_bytes(),
    )
    client = make_client(max_faces=2)
    body = client.post("/v1/detect", files={"image": ("t1.jpg", crowd, "image/jpeg")}).json()
    assert (len(body["faces"]), body["faces_found"], body["truncated"]) == (2, 6, True)
    body = client.post("/v1/detect", files={"image": ("o.jpg", portrait, "image/jpeg")}).json()
    assert (len(body["faces"]), body["faces_found"], body["truncated"]) == (1, 1, False)
    files = {"image1": ("t1.jpg", crowd, "image/jpeg"), "image2": ("o.jpg", portrait, "image/jpeg")}
    body = client.post("/v1/verify?threshold=0.5", files=files).json()
    assert (len(body["faces1"]), body["faces1_found"], body["faces2_found"], body["truncated"]) == (2, 6, 1, True)
