"""Faces linked across frames: box overlap (with constant-velocity motion) and embedding similarity.

Each detection step solves one assignment (Hungarian, scipy's `linear_sum_assignment`) between the
live tracks and the new detections. The cost mixes what each cue is good at: overlap keeps a track
through fast motion of a face that barely changes, the embedding keeps it through a missed detection
or a cut back to the same person (overlap is then zero, so only appearance can link it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) boxes (x1, y1, x2, y2) -> (N, M) intersection over union."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class TrackerConfig:
    min_iou: float = 0.2  # below this, boxes alone do not link a detection to a track
    # Cosine similarity that alone links a detection to a track (a cut back, a face that moved far):
    # the embedding model's calibrated threshold at a strict FAR is the natural choice.
    min_appearance: float = 0.5
    veto_appearance: float = 0.3  # below this cosine, even full overlap does not link
    appearance_weight: float = 0.5  # cost = 1 - (w * cosine + (1 - w) * IoU)
    max_missed_s: float = (
        1.0  # after this long without a detection, a track's last box no longer links (only appearance does)
    )
    reid_s: float = 10.0  # ... but an unseen track can still be re-found by appearance for this long
    embedding_momentum: float = 0.8  # the track's appearance: running mean of its unit embeddings

    @classmethod
    def for_thresholds(cls, strict: float, loose: float, **overrides) -> TrackerConfig:
        """Gates scaled to an embedding model's calibrated thresholds (cosine at a strict and a loose FAR):
        cosine scales differ by model (dlib's ResNet puts different people at 0.85-0.95, ArcFace near 0).
        Linking by appearance alone asks for more than the strict threshold; the veto sits below the loose one."""
        return cls(min_appearance=strict + (1 - strict) / 4, veto_appearance=loose - (1 - loose) / 2, **overrides)


@dataclass
class Track:
    id: int
    box: np.ndarray  # last box (x1, y1, x2, y2)
    embedding: np.ndarray  # running appearance, unit length
    last_seen: float  # time (s) of the last detection
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # box change per second

    def predicted(self, time: float) -> np.ndarray:
        return self.box + self.velocity * (time - self.last_seen)


class Tracker:
    """Assigns track ids to the detections of each detection step; between steps, boxes are predicted."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.tracks: dict[int, Track] = {}
        self.next_id = 1

    def expire(self, time: float) -> list[int]:
        """Forget tracks too old to be re-found; their ids (so the caller can finish them)."""
        gone = [i for i, t in self.tracks.items() if time - t.last_seen > self.config.reid_s]
        for i in gone:
            del self.tracks[i]
        return gone

    def _cost(self, tracks: list[Track], boxes: np.ndarray, embeddings: np.ndarray, time: float) -> np.ndarray:
        config = self.config
        predicted = np.array([t.predicted(time) for t in tracks]).reshape(-1, 4)
        on_screen = np.array([time - t.last_seen <= config.max_missed_s for t in tracks])
        overlap = iou_matrix(predicted, boxes) * on_screen[:, None]  # a long-lost track's old box means nothing
        cosine = np.array([t.embedding for t in tracks]).reshape(len(tracks), -1) @ embeddings.T
        allowed = (overlap >= config.min_iou) | (cosine >= config.min_appearance)
        # Overlap with a clearly different face (two people crossing) must not link it.
        allowed &= cosine >= config.veto_appearance
        cost = 1.0 - (config.appearance_weight * cosine + (1 - config.appearance_weight) * overlap)
        return np.where(allowed, cost, np.inf)

    def update(self, boxes: np.ndarray, embeddings: np.ndarray, time: float) -> list[int]:
        """Detections of one step (boxes (N, 4), unit embeddings (N, D)) at `time` s -> a track id for each."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        embeddings = np.asarray(embeddings, np.float64)
        if not len(boxes):  # a detection step that found nobody: tracks wait (and age)
            return []
        tracks = list(self.tracks.values())
        ids = [0] * len(boxes)
        if tracks and len(boxes):
            cost = self._cost(tracks, boxes, embeddings, time)
            finite = np.where(np.isfinite(cost), cost, 1e6)  # linear_sum_assignment needs finite costs
            for row, col in zip(*linear_sum_assignment(finite)):
                if np.isfinite(cost[row, col]):
                    self._observe(tracks[row], boxes[col], embeddings[col], time)
                    ids[col] = tracks[row].id
        for col, track_id in enumerate(ids):
            if not track_id:
                ids[col] = self._start(boxes[col], embeddings[col], time)
        return ids

    def _observe(self, track: Track, box: np.ndarray, embedding: np.ndarray, time: float) -> None:
        elapsed = time - track.last_seen
        if 0 < elapsed <= self.config.max_missed_s:
            track.velocity = 0.5 * track.velocity + 0.5 * (box - track.box) / elapsed
        else:  # after a gap (or a cut) the old motion says nothing
            track.velocity = np.zeros(4)
        momentum = self.config.embedding_momentum
        mixed = momentum * track.embedding + (1 - momentum) * embedding
        track.embedding = mixed / max(np.linalg.norm(mixed), 1e-12)
        track.box, track.last_seen = box.copy(), time

    def _start(self, box: np.ndarray, embedding: np.ndarray, time: float) -> int:
        track = Track(self.next_id, box.copy(), embedding / max(np.linalg.norm(embedding), 1e-12), time)
        self.tracks[track.id] = track
        self.next_id += 1
        return track.id
