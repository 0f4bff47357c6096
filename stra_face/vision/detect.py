"""Face detection: MTCNN's three networks in ONNX Runtime, its cascade in numpy + OpenCV (no torch).

The networks are facenet-pytorch's P-Net, R-Net and O-Net exported by `stra_face/training/export/mtcnn.py`;
the cascade follows facenet-pytorch's `detect_face` step by step (pyramid, thresholds 0.6/0.7/0.7,
NMS, box regression, squaring, clipping), so boxes, scores and landmarks mean what they meant
there. facenet-pytorch stays the reference: tests compare both on real photos.

What differs is where pixels come from, so that the cost no longer follows the upload's size:
- P-Net scans a pyramid whose first level is at most `detection_size` pixels on its long side:
  over the whole image, the smallest face searched by default is `max(min_face_size, 12 * long side
  / detection_size)` original pixels (12 px: P-Net's window). Where that level's P-Net map says a
  face is likely, a second pass runs P-Net at the finer scales down to `min_face_size`, so group
  photos keep their small faces while a portrait's cost barely moves. A request's own
  `min_face_size` (original pixels) is honoured as asked over the whole image, even when that costs more.
- Every pyramid level is area-resampled from the smallest halved copy of the original that is at
  least its size, and every R-Net / O-Net crop from the one with 8x its resolution, so big uploads
  are read in full once, and O-Net crops (landmarks) keep the original's full detail.

What is not facenet-pytorch's is written for the cost on two cores: area resampling by integral
images (separable for levels, one gather for all crops at once), IoU NMS by OpenCV, and
ONNX Runtime sessions that do not spin between calls (see `stra_face.vision.inference.OnnxModel`).

The cascade runs in three steps (`propose`, `refine`, `finish`) around the R-Net and O-Net calls,
so the service can batch the crops of every waiting image into one call per network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from stra_face.vision.inference import OnnxModel

MODELS = Path(__file__).resolve().parents[1] / "assets" / "models"
PNET_WINDOW = 12  # P-Net sees 12x12 windows with stride 2
PYRAMID_FACTOR = 0.709
THRESHOLDS = (0.6, 0.7, 0.7)  # P-Net, R-Net, O-Net (facenet-pytorch's defaults)
RNET_SIZE, ONET_SIZE = 24, 48
PIXEL_MEAN, PIXEL_SCALE = 127.5, 0.0078125  # MTCNN's input: (pixel - 127.5) / 128
# Images are resampled from the smallest halved copy with at least this many times their
# resolution: a 12 MP upload is read in full once, and crops (whose offsets round to 1/16 of a
# network input pixel at most) look as if cut from the original. Measured against facenet-pytorch
# on ../shared/data/faces: crops at 4x moved landmarks by up to 1.5 px at 112x112, at 8x by 0.3;
# pyramid levels (which only propose candidates) lose no face at 1x.
OVERSAMPLE_LEVEL, OVERSAMPLE_CROP = 1, 8
# Candidates per R-Net / O-Net call: a call's memory grows with its batch (about 0.1 MB per R-Net
# and 0.6 MB per O-Net candidate), and a 225-face crowd brings thousands. Larger calls run no
# faster on CPU (see docs/memory.md): smaller ones ran faster (per candidate, interleaved on 2 cores:
# R-Net 64 vs 256 -9%, O-Net 16 vs 64 -24%; their activations stay in cache).
RNET_CHUNK, ONET_CHUNK = 64, 16
# Peak memory of a detection, measured: about 35 bytes per pixel of the image (its halvings and the
# integral images of crops) and 150 per pixel of P-Net's first pyramid level (the network's
# activations), so a level pixel weighs as 4 image pixels in `work_pixels`.
PNET_PIXEL_WEIGHT = 4
SMALL_FACE_GATE = 0.95  # P-Net probability at the full-image pass's finest level that sends a region to the finer pass
# What the small-face pass sends to R-Net and O-Net. With MTCNN's own rules a 1600x898 crowd (~140 faces)
# sent ~8,500 R-Net and ~1,700 O-Net crops, most of them faces already proposed (measured on lumia.jpg,
# docs/detection.md, Crowds): its P-Net candidates need P-Net's 0.8 (not 0.6; 0.7 kept one more face of 613
# over all photos, at ~11% more time on the crowd), and one IoU 0.5 NMS over all its scales and tiles
# (MTCNN's per-level rule; its 0.7 across levels kept boxes of neighbouring scales) before they join the
# whole-image pass's. Faces under `min_face_size` are dropped after O-Net, and no candidate there that O-Net
# scored >= 0.9 and ended at 20 px or more had come in under 21.4 px: with the small-face pass, boxes under
# `min_face_size` skip O-Net. Then ~5,500 / ~1,000 crops, two faces of 143 fewer.
SMALL_FACE_PNET_THRESHOLD = 0.8
SMALL_FACE_NMS = 0.5


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # (4,) x1, y1, x2, y2 in image pixels
    score: float
    landmarks: np.ndarray  # (5, 2) left eye, right eye, nose, mouth left, mouth right

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


def _windows(source: int, target: int | np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torch's `interpolate(mode="area")` (adaptive average pooling), which facenet-pytorch resamples
    with: output pixel i averages input pixels floor(i * source / target) to ceil((i + 1) * source / target).
    OpenCV's INTER_AREA weighs border pixels differently, and that moves scores by up to 0.07."""
    return index * source // target, -(-(index + 1) * source // target)


def integral_image(image: np.ndarray) -> np.ndarray:
    """`cv2.integral` in int32 where its sums fit (half the memory traffic of float64), else float64."""
    return cv2.integral(image, sdepth=cv2.CV_32S if image.shape[0] * image.shape[1] * 255 < 2**31 else cv2.CV_64F)


def area_resize(integral: np.ndarray, height: int, width: int) -> np.ndarray:
    """The image whose `cv2.integral` is given, area-resampled to MTCNN's input: (1, C, height,
    width) float32, normalised as `_normalise` does, in one pass over the output.

    Separable: rows first, then columns, each a `np.take` of whole rows (fancy indexing of both
    axes at once is several times slower). Sums are exact integers, so the means are the reference's."""
    top, bottom = _windows(integral.shape[0] - 1, height, np.arange(height))
    left, right = _windows(integral.shape[1] - 1, width, np.arange(width))
    rows = np.take(integral, bottom, axis=0) - np.take(integral, top, axis=0)
    total = np.take(rows, right, axis=1) - np.take(rows, left, axis=1)
    factor = (PIXEL_SCALE / ((bottom - top)[:, None] * (right - left)[None, :])).astype(np.float32)
    return (total.transpose(2, 0, 1) * factor - PIXEL_MEAN * PIXEL_SCALE).astype(np.float32, copy=False)[None]


def area_crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Every box [x1, y1, x2, y2) of `image` area-resampled to (size, size): (N, size, size, C)
    float32, the four corners of every output pixel's window gathered for all boxes at once from
    one integral image (int32 where its sums fit: numpy gathers them faster than `cv2.remap` does
    float64, measured on the crops of 480p, 1080p and crowd photos)."""
    integral = integral_image(image)
    index = np.arange(size)
    top, bottom = _windows((boxes[:, 3] - boxes[:, 1])[:, None], size, index)
    left, right = _windows((boxes[:, 2] - boxes[:, 0])[:, None], size, index)
    top, bottom, left, right = top + boxes[:, 1:2], bottom + boxes[:, 1:2], left + boxes[:, 0:1], right + boxes[:, 0:1]
    flat, stride = integral.reshape(-1, integral.shape[2]), integral.shape[1]

    def corner(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.take(flat, (rows * stride)[:, :, None] + cols[:, None, :], axis=0)

    total = (corner(bottom, right) - corner(top, right) - corner(bottom, left) + corner(top, left)).astype(np.float32)
    total /= ((bottom - top)[:, :, None] * (right - left)[:, None, :]).astype(np.float32)[..., None]
    return total


def _clusters(boxes: np.ndarray):
    """Groups of boxes whose bounding region is at most twice their summed area, with that region:
    candidates crowd around faces, and one integral image per crowd costs far less than one per box
    or one for a 12 MP image. Groups are split in two along the region's longer side until they fit."""
    pending = [np.arange(len(boxes))]
    while pending:
        group = pending.pop()
        part = boxes[group]
        x1, y1, x2, y2 = part[:, 0].min(), part[:, 1].min(), part[:, 2].max(), part[:, 3].max()
        if (
            len(group) == 1
            or (x2 - x1) * (y2 - y1) <= 2 * ((part[:, 2] - part[:, 0]) * (part[:, 3] - part[:, 1])).sum()
        ):
            yield group, (x1, y1, x2, y2)
            continue
        axis = 0 if x2 - x1 >= y2 - y1 else 1
        order = np.argsort(part[:, axis] + part[:, axis + 2], kind="stable")
        pending += [group[order[: len(group) // 2]], group[order[len(group) // 2 :]]]


class HalvingPyramid:
    """The image and its successive halvings (made on demand), area-resampled from the right one."""

    def __init__(self, image: np.ndarray):
        self.levels = [np.ascontiguousarray(image)]
        self.height, self.width = image.shape[:2]

    def _level(self, scale: float, oversample: int) -> int:
        """The smallest level with at least `oversample` x the resolution of `scale`."""
        index = 0
        while True:
            height, width = self.levels[index].shape[:2]
            if width // 2 < oversample * scale * self.width or height // 2 < oversample * scale * self.height:
                return index
            index += 1
            if index == len(self.levels):
                self.levels.append(
                    cv2.resize(self.levels[index - 1], (width // 2, height // 2), interpolation=cv2.INTER_AREA)
                )

    def resized(self, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """The whole image at each (height, width) as MTCNN's input, all from the level that suits the largest."""
        index = self._level(max(sizes[0][0] / self.height, sizes[0][1] / self.width), OVERSAMPLE_LEVEL)
        integral = integral_image(self.levels[index])  # one integral image serves every size
        return [area_resize(integral, height, width) for height, width in sizes]

    def region(self, box: tuple[int, int, int, int], scale: float) -> np.ndarray:
        """Original pixels [y1:y2, x1:x2] area-resampled by `scale` as MTCNN's input, from the level that suits it."""
        x1, y1, x2, y2 = box
        level = self.levels[self._level(scale, OVERSAMPLE_LEVEL)]
        fx, fy = level.shape[1] / self.width, level.shape[0] / self.height
        part = level[
            round(y1 * fy) : max(round(y2 * fy), round(y1 * fy) + 1),
            round(x1 * fx) : max(round(x2 * fx), round(x1 * fx) + 1),
        ]
        return area_resize(
            integral_image(np.ascontiguousarray(part)), int((y2 - y1) * scale + 1), int((x2 - x1) * scale + 1)
        )

    def crops(self, boxes: np.ndarray, size: int) -> np.ndarray:
        """Original pixels [y1:y2, x1:x2] of each integer box resized to (size, size): (N, size, size, C)
        float32. Each crop comes from the smallest level with `OVERSAMPLE_CROP` x its resolution; the
        crops of one level share one integral image of the region they cover."""
        out = np.empty((len(boxes), size, size, self.levels[0].shape[2]), np.float32)
        sides = np.maximum(1, np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))
        levels = np.array([self._level(size / side, OVERSAMPLE_CROP) for side in sides.tolist()], np.int64)
        for index in np.unique(levels):
            chosen = np.flatnonzero(levels == index)
            level = self.levels[index]
            scale = np.array([level.shape[1] / self.width, level.shape[0] / self.height] * 2)
            corners = np.round(boxes[chosen] * scale).astype(np.int64)  # round half to even, as Python's round
            corners[:, 2:] = np.maximum(corners[:, 2:], corners[:, :2] + 1)
            for group, (x1, y1, x2, y2) in _clusters(corners):
                out[chosen[group]] = area_crops(level[y1:y2, x1:x2], corners[group] - [x1, y1, x1, y1], size)
        return out


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Indices kept by greedy NMS, best score first. "union": IoU (torchvision's `nms`, which
    facenet-pytorch uses in its first two stages); "min": overlap over the smaller box with +1
    pixel areas (its `nms_numpy(..., 'Min')`, used after O-Net on a few boxes per face)."""
    if len(boxes) == 0:
        return np.empty(0, np.int64)
    if method == "union":
        return _nms_union(boxes.astype(np.float64), scores.astype(np.float32), threshold)
    x1, y1, x2, y2 = (boxes[:, i].astype(np.float64) for i in range(4))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    # Ties as the reference breaks them where its `np.argsort(s)[-1]` sorts stably (the last index
    # first), but always so: numpy's default argsort of over 16 values orders ties by the CPU's SIMD.
    order = np.argsort(scores, kind="stable")[::-1]
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        height = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        order = rest[width * height / np.minimum(areas[best], areas[rest]) <= threshold]
    return np.asarray(keep, np.int64)


def _nms_union(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """IoU NMS by OpenCV's `NMSBoxes` (C++; the same greedy rule, ties kept in input order as
    torch's sort keeps them; identical picks on every call of a detection run over ../shared/data/faces),
    run separately on groups of boxes whose areas differ too much to overlap beyond `threshold`
    (IoU <= smaller area / larger area). P-Net's candidates from different pyramid levels differ
    by a factor 2 in area, so its 0.7 pass over thousands of crowd candidates is many small passes."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    by_area = np.argsort(areas, kind="stable")
    sorted_areas = areas[by_area]
    breaks = np.flatnonzero(sorted_areas[:-1] <= threshold * sorted_areas[1:]) + 1
    keep = []
    for group in np.split(by_area, breaks):
        group = np.sort(group)  # input order within the group: it decides ties
        rects = np.stack(
            [boxes[group, 0], boxes[group, 1], boxes[group, 2] - boxes[group, 0], boxes[group, 3] - boxes[group, 1]],
            axis=1,
        )
        if len(group) > SPARSE_NMS_FROM:
            keep.append(group[_nms_sparse(rects, scores[group], threshold)])
        else:
            keep.append(group[np.asarray(cv2.dnn.NMSBoxes(rects, scores[group], 0.0, threshold), np.int64).reshape(-1)])
    keep = np.concatenate(keep)
    return keep[np.lexsort((keep, -scores[keep]))]


SPARSE_NMS_FROM = 512  # boxes in one group, from which `_nms_sparse` replaces OpenCV's NMSBoxes


def _nms_sparse(rects: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """What `cv2.dnn.NMSBoxes(rects, scores, 0.0, threshold)` keeps (rects: x, y, width, height in float64;
    scores > 0), at a cost that follows the number of overlapping pairs, not boxes x boxes: NMSBoxes
    compares every box with every box kept before it, 0.2 s for the ~6,000 candidates of a crowd's
    small-face pass. The same arithmetic (OpenCV's rectangle intersection in float64, its overlap
    `1 - float(1 - IoU)` in float32, kept when <= the threshold) and the same order (score, then input
    order), so the same boxes."""
    n = len(rects)
    x1, y1, width, height = rects.T
    x2, y2, areas = x1 + width, y1 + height, width * height
    by_x = np.argsort(x1, kind="stable")
    # pairs (i, j) with j after i by left edge and starting before i's right edge: every pair that can overlap
    ends = np.searchsorted(x1[by_x], x2[by_x], side="left")
    counts = np.maximum(ends - np.arange(1, n + 1), 0)
    first = np.repeat(np.arange(n), counts)
    second = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + first + 1
    a, b = by_x[first], by_x[second]
    inter_w = np.minimum(x2[a], x2[b]) - np.maximum(x1[a], x1[b])
    inter_h = np.minimum(y2[a], y2[b]) - np.maximum(y1[a], y1[b])
    inter = np.where((inter_w > 0) & (inter_h > 0), inter_w * inter_h, 0.0)
    overlap = np.float32(1) - (1.0 - inter / (areas[a] + areas[b] - inter)).astype(np.float32)
    close = overlap > np.float32(threshold)
    a, b = a[close], b[close]
    order = np.lexsort((np.arange(n), -scores))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    higher, lower = np.where(rank[a] < rank[b], a, b), np.where(rank[a] < rank[b], b, a)
    by_higher = np.argsort(higher, kind="stable")
    lower, starts = lower[by_higher], np.searchsorted(higher[by_higher], np.arange(n + 1))
    suppressed, keep = np.zeros(n, bool), []
    for index in order.tolist():
        if not suppressed[index]:
            keep.append(index)
            suppressed[lower[starts[index] : starts[index + 1]]] = True
    return np.asarray(keep, np.int64)


def small_face_regions(
    probabilities: np.ndarray, scale: float, height: int, width: int
) -> list[tuple[int, int, int, int]]:
    """Boxes (original pixels, clipped) around the groups of cells of a P-Net probability map (at
    `scale`) at or above `SMALL_FACE_GATE`, grown by one cell and half a window, so that a smaller
    face centred anywhere near a flagged cell lies inside; the whole image when they cover most of it."""
    grow = 1 + PNET_WINDOW // 4  # cells (stride 2): one, then half a window
    mask = cv2.dilate(
        (probabilities >= SMALL_FACE_GATE).astype(np.uint8), np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)
    )
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    regions = [
        (
            int(2 * col / scale),
            int(2 * row / scale),
            min(width, int((2 * (col + cols - 1) + PNET_WINDOW) / scale) + 1),
            min(height, int((2 * (row + rows - 1) + PNET_WINDOW) / scale) + 1),
        )
        for col, row, cols, rows, _ in stats[1:].tolist()
    ]
    if sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in regions) > height * width / 2:
        return [(0, 0, width, height)]  # one pass over the image costs less than many overlapping ones
    return regions


def _tiles(box: tuple[int, int, int, int], scale: float, limit: int) -> list[tuple[int, int, int, int]]:
    """`box` split into an n x n grid of tiles of at most about `limit` pixels once resampled by
    `scale` (so that no P-Net call needs more memory than the full-image pass's first level), each
    grown by two windows so that a face on a seam lies whole in one tile."""
    x1, y1, x2, y2 = box
    parts = int(np.ceil(np.sqrt((x2 - x1) * (y2 - y1) * scale**2 / limit)))
    if parts <= 1:
        return [box]
    overlap = int(np.ceil(2 * PNET_WINDOW / scale))
    xs, ys = np.linspace(x1, x2, parts + 1).astype(int), np.linspace(y1, y2, parts + 1).astype(int)
    return [
        (max(x1, xs[i] - overlap), max(y1, ys[j] - overlap), min(x2, xs[i + 1] + overlap), min(y2, ys[j + 1] + overlap))
        for j in range(parts)
        for i in range(parts)
    ]


def _regress(boxes: np.ndarray, offsets: np.ndarray, plus_one: bool) -> np.ndarray:
    """Box regression: each side moves by its offset times the box's width / height."""
    one = 1.0 if plus_one else 0.0
    size = np.stack([boxes[:, 2] - boxes[:, 0] + one, boxes[:, 3] - boxes[:, 1] + one] * 2, axis=1)
    return boxes[:, :4] + offsets * size


def _square(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square on its longer side, same centre (facenet-pytorch's `rerec`)."""
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    x1, y1 = boxes[:, 0] + (width - side) / 2, boxes[:, 1] + (height - side) / 2
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def _in_chunks(model: OnnxModel, crops: np.ndarray, chunk: int) -> np.ndarray:
    """The network's outputs, concatenated, for at most `chunk` crops per call."""
    calls = [
        model.session.run(None, {"input": crops[start : start + chunk]})
        for start in range(0, max(len(crops), 1), chunk)
    ]
    return np.concatenate([np.concatenate(outputs, axis=1) for outputs in calls])


def _normalise(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) float32 RGB -> MTCNN's (N, 3, H, W) input."""
    return ((images - PIXEL_MEAN) * PIXEL_SCALE).transpose(0, 3, 1, 2).astype(np.float32, copy=False)


@dataclass
class Cascade:
    """One image between the cascade's steps."""

    pyramid: HalvingPyramid
    min_face_size: float  # original pixels
    boxes: np.ndarray  # (K, 4) squared candidate boxes in original pixels
    scores: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    small_pass: bool = False  # the small-face pass ran (its candidates are among the boxes)
    crops: np.ndarray = field(
        default_factory=lambda: np.empty((0, 3, RNET_SIZE, RNET_SIZE), np.float32)
    )  # the next network's input

    def cut(self, size: int) -> None:
        """Crop every box (clipped to the image, as facenet-pytorch does) for the next network."""
        height, width = self.pyramid.height, self.pyramid.width
        corners = np.trunc(self.boxes).astype(np.int64)
        x1, y1 = np.maximum(corners[:, 0], 1) - 1, np.maximum(corners[:, 1], 1) - 1
        x2, y2 = np.minimum(corners[:, 2], width), np.minimum(corners[:, 3], height)
        inside = (x2 > x1) & (y2 > y1)
        self.boxes, self.scores = self.boxes[inside], self.scores[inside] if len(self.scores) else self.scores
        crops = self.pyramid.crops(np.stack([x1, y1, x2, y2], axis=1)[inside], size)
        self.crops = _normalise(crops)


class FaceDetector:
    """Every face of an image, largest first; thread-safe (ONNX Runtime sessions are)."""

    def __init__(
        self,
        min_face_size: int = 20,
        score_threshold: float = 0.9,
        detection_size: int = 512,
        models: Path = MODELS,
        providers: list[str] | None = None,
        intra_op_threads: int = 0,
        small_faces: bool = True,
    ):
        self.min_face_size = min_face_size
        self.small_faces = small_faces  # the finer pass down to min_face_size where P-Net flags the image
        self.score_threshold = score_threshold
        self.detection_size = detection_size
        providers = providers or ["CPUExecutionProvider"]
        self.pnet, self.rnet, self.onet = (
            OnnxModel(models / f"mtcnn_{name}.onnx", providers, intra_op_threads) for name in ("pnet", "rnet", "onet")
        )

    def smallest_face(self, height: int, width: int, min_face_size: int | None = None) -> float:
        """The smallest face side (original pixels) searched for over the whole image: the request's,
        or the server's floor raised to what a `detection_size` pyramid can see (by default, the
        small-face pass searches down to the floor where P-Net flags the image)."""
        if min_face_size is not None:
            return float(min_face_size)
        return max(float(self.min_face_size), PNET_WINDOW * max(height, width) / self.detection_size)

    def work_pixels(self, height: int, width: int, min_face_size: int | None = None) -> int:
        """What detecting faces of `min_face_size` in a height x width image costs in memory, in image
        pixels: the image's own plus P-Net's first pyramid level (the largest) at its weight."""
        scale = PNET_WINDOW / self.smallest_face(height, width, min_face_size)
        return height * width + PNET_PIXEL_WEIGHT * int(height * scale + 1) * int(width * scale + 1)

    # ------------------------------------------------------------------ the three networks

    def run_rnet(self, crops: np.ndarray) -> np.ndarray:
        """(N, 3, 24, 24) -> (N, 6): 4 box offsets, 2 class probabilities."""
        return _in_chunks(self.rnet, crops, RNET_CHUNK)

    def run_onet(self, crops: np.ndarray) -> np.ndarray:
        """(N, 3, 48, 48) -> (N, 16): 4 box offsets, 10 landmark coordinates, 2 class probabilities."""
        return _in_chunks(self.onet, crops, ONET_CHUNK)

    # ------------------------------------------------------------------ the cascade, step by step

    def _pnet(
        self, level: np.ndarray, scale: float, origin: tuple[int, int] = (0, 0), threshold: float = THRESHOLDS[0]
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """P-Net over one pyramid level (of the region whose corner is `origin`): its candidates at or above
        `threshold` (boxes in original pixels, score, 4 offsets; None when none) after NMS, and its face
        probability map."""
        offsets, probabilities = self.pnet.session.run(None, {"input": level})
        rows, cols = np.nonzero(probabilities[0, 1] >= threshold)
        if not len(rows):
            return None, probabilities[0, 1]
        corners = np.stack([cols, rows], axis=1).astype(np.float32)
        boxes = np.concatenate(
            [np.floor((2 * corners + 1) / scale), np.floor((2 * corners + PNET_WINDOW) / scale)], axis=1
        ) + np.float32(origin * 2)
        scores = probabilities[0, 1, rows, cols]
        keep = nms(boxes, scores, 0.5)
        return np.concatenate([boxes, scores[:, None], offsets[0][:, rows, cols].T], axis=1)[keep], probabilities[0, 1]

    def _small_faces(self, pyramid: HalvingPyramid, probabilities: np.ndarray, scale: float) -> list[np.ndarray]:
        """P-Net at the finer scales down to `min_face_size`, only around the cells of the full-image
        pass's finest level (`probabilities`, at `scale`) that P-Net flags at `SMALL_FACE_GATE`: faces
        smaller than that level's window still make it respond where they are. A crowd flags most of
        the image (then the finer scales cover all of it, once); a 1080p portrait flags a few cells."""
        finest = PNET_WINDOW / self.min_face_size
        steps = int(
            np.ceil(np.log(finest / scale) / -np.log(PYRAMID_FACTOR))
        )  # even steps, none wider than the pyramid's
        scales = [finest * (scale / finest) ** (k / steps) for k in range(steps)]
        found = []
        for box in small_face_regions(probabilities, scale, pyramid.height, pyramid.width):
            for fine in scales:
                for tile in _tiles(box, fine, probabilities.size * 4):
                    candidates, _ = self._pnet(pyramid.region(tile, fine), fine, tile[:2], SMALL_FACE_PNET_THRESHOLD)
                    if candidates is not None:
                        found.append(candidates)
        return found

    def propose(self, image: np.ndarray, min_face_size: int | None = None) -> Cascade:
        """P-Net over the pyramid (and, by default on images larger than the pyramid, over the finer
        scales where small faces are likely); the candidates' R-Net crops are in `crops`."""
        pyramid = HalvingPyramid(image)
        height, width = image.shape[:2]
        smallest = self.smallest_face(height, width, min_face_size)
        scales = []
        scale, side = PNET_WINDOW / smallest, min(height, width) * PNET_WINDOW / smallest
        while side >= PNET_WINDOW:
            scales.append(scale)
            scale, side = scale * PYRAMID_FACTOR, side * PYRAMID_FACTOR
        found, finest = [], None
        levels = (
            pyramid.resized([(int(height * scale + 1), int(width * scale + 1)) for scale in scales]) if scales else []
        )
        for scale, level in zip(scales, levels):
            candidates, probabilities = self._pnet(level, scale)
            finest = probabilities if finest is None else finest
            if candidates is not None:
                found.append(candidates)
        small_pass = self.small_faces and min_face_size is None and finest is not None and smallest > self.min_face_size
        if small_pass:
            fine = self._small_faces(pyramid, finest, scales[0])
            if fine:
                fine = np.concatenate(fine)
                found.append(fine[nms(fine[:, :4], fine[:, 4], SMALL_FACE_NMS)])  # over all its scales and tiles
            smallest = float(self.min_face_size)
        cascade = Cascade(pyramid, smallest, np.empty((0, 4), np.float32), small_pass=small_pass)
        if found:
            candidates = np.concatenate(found)
            candidates = candidates[nms(candidates[:, :4], candidates[:, 4], 0.7)]
            cascade.boxes = _square(_regress(candidates[:, :4], candidates[:, 5:9], plus_one=False))
            cascade.scores = candidates[:, 4]
        cascade.cut(RNET_SIZE)
        return cascade

    def refine(self, cascade: Cascade, rnet_output: np.ndarray) -> Cascade:
        """Keep R-Net's faces, regress and square their boxes; their O-Net crops are in `crops`."""
        scores = rnet_output[:, 5]
        passed = scores > THRESHOLDS[1]
        boxes, scores, offsets = cascade.boxes[passed], scores[passed], rnet_output[passed, :4]
        keep = nms(boxes, scores, 0.7)
        boxes, scores = _square(_regress(boxes[keep], offsets[keep], plus_one=True)), scores[keep]
        if cascade.small_pass:  # boxes too small to end at min_face_size after O-Net
            large = boxes[:, 2] - boxes[:, 0] >= cascade.min_face_size
            boxes, scores = boxes[large], scores[large]
        cascade.boxes, cascade.scores = boxes, scores
        cascade.cut(ONET_SIZE)
        return cascade

    def finish(
        self, cascade: Cascade, onet_output: np.ndarray, score_threshold: float | None = None
    ) -> list[Detection]:
        """O-Net's faces with their landmarks, at or above the score threshold, largest first."""
        score_threshold = self.score_threshold if score_threshold is None else score_threshold
        scores = onet_output[:, 15]
        passed = scores > THRESHOLDS[2]
        boxes, scores, offsets, points = (
            cascade.boxes[passed],
            scores[passed],
            onet_output[passed, :4],
            onet_output[passed, 4:14],
        )
        size = np.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1], axis=1)
        landmarks = np.stack([points[:, :5], points[:, 5:]], axis=2) * size[:, None, :] + boxes[:, None, :2] - 1
        boxes = _regress(boxes, offsets, plus_one=True)
        keep = nms(boxes, scores, 0.7, method="min")
        detections = [
            Detection(boxes[i].astype(np.float32), float(scores[i]), landmarks[i].astype(np.float32))
            for i in keep
            if scores[i] >= score_threshold and boxes[i, 2] - boxes[i, 0] >= cascade.min_face_size
        ]
        return sorted(detections, key=lambda d: d.area, reverse=True)

    def detect(
        self, image: np.ndarray, min_face_size: int | None = None, score_threshold: float | None = None
    ) -> list[Detection]:
        cascade = self.propose(image, min_face_size)
        if len(cascade.crops):
            cascade = self.refine(cascade, self.run_rnet(cascade.crops))
        if not len(cascade.crops):
            return []
        return self.finish(cascade, self.run_onet(cascade.crops), score_threshold)
