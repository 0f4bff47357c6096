"""Frames -> faces -> tracks: who is on screen (named from the gallery) and what they show, over time.

`VideoSession` takes frames one at a time (a file, or a live stream's JPEGs) and answers each with the
faces on it; `analyze_file` runs one over a video file. Per track only compact data is kept (frame
index, box and 7 probabilities per observation in flat arrays, the best few gallery matches, one
thumbnail), so memory does not depend on the resolution and grows by 48 bytes per face per detection step.
"""

from __future__ import annotations

import heapq
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from stra_face.bundle import load_face_models
from stra_face.config import PipelineSettings
from stra_face.gallery import Gallery, Match
from stra_face.tracks.output import thumbnail_jpeg
from stra_face.tracks.source import VideoLimits, frames, probe
from stra_face.tracks.timeline import segments, smooth
from stra_face.tracks.tracking import Tracker, TrackerConfig
from stra_face.vision.align import align_face, expression_crop
from stra_face.vision.detect import Detection, FaceDetector
from stra_face.vision.inference import EmbeddingModel, ExpressionModel
from stra_face.vision.preprocess import EXPRESSIONS
from stra_face.vision.thresholds import Calibration

if TYPE_CHECKING:
    from stra_face.analyzer import FaceAnalyzer

UNKNOWN = "unknown"


@dataclass
class Models:
    detector: FaceDetector
    embedder: EmbeddingModel
    expression: ExpressionModel
    calibration: Calibration | None = None  # the embedding model's thresholds, when calibrated

    @classmethod
    def load(cls, settings: PipelineSettings | None = None, **overrides) -> Models:
        """The models the service and `FaceAnalyzer` load (STRA_* variables, else the shipped files);
        keyword arguments override settings, e.g. `providers=["CPUExecutionProvider"]`."""
        settings = PipelineSettings(**(settings.model_dump() if settings else {}) | overrides)
        loaded = load_face_models(settings)
        if loaded.expression is None:
            raise ValueError(f"no expression model at {settings.expression_model}: video analysis reads expressions")
        return cls(loaded.detector, loaded.embedder, loaded.expression, loaded.calibration)

    @classmethod
    def of(cls, analyzer: FaceAnalyzer) -> Models:
        """The models an already loaded `FaceAnalyzer` holds (nothing is loaded twice)."""
        if analyzer.expression_model is None:
            raise ValueError(
                f"no expression model at {analyzer.settings.expression_model}: video analysis reads expressions"
            )
        return cls(analyzer.detector, analyzer.embedder, analyzer.expression_model, analyzer.calibration)

    def tracker_config(self) -> TrackerConfig:
        if self.calibration is None:
            return TrackerConfig()
        # The gates were set against FAR 1e-3 (strict) and 1e-2 (loose); a looser calibrated FAR (0.1) would
        # let the veto pass different people sitting where a track's last box was.
        calibration = self.calibration
        return TrackerConfig.for_thresholds(calibration.threshold_for(1e-3)[0], calibration.threshold_for(1e-2)[0])


class Identifier:
    """A face embedding -> the gallery's best subject, when it passes the calibrated threshold."""

    def __init__(self, gallery: Gallery, model_sha256: str, threshold: float):
        self.gallery, self.model_sha256, self.threshold = gallery, model_sha256, threshold

    @classmethod
    def calibrated(cls, gallery: Gallery, models: Models, far: float = 1e-3) -> Identifier:
        if models.calibration is None:
            raise ValueError(f"no calibrated threshold for {models.embedder.path.name}: give one explicitly")
        return cls(gallery, models.embedder.sha256, models.calibration.threshold_for(far)[0])

    def best(self, embedding: np.ndarray) -> Match | None:
        matches = self.gallery.search(embedding, self.model_sha256, 1)
        return matches[0] if matches else None


@dataclass
class FrameMatch(Match):
    """The gallery's best subject for one detection, and whether it passed the threshold."""

    accepted: bool = False


@dataclass(frozen=True)
class VideoOptions:
    detect_every: int = 3  # detect (and embed, and read the expression) on every N-th frame
    max_faces: int = 16  # largest faces per frame
    min_face_size: int | None = None  # detector default when None
    flip_expressions: bool = True  # mirror TTA, as the service does by default
    smoothing_s: float = 0.5  # expression probabilities averaged over this window
    min_segment_s: float = 0.5  # a dominant expression held for less is no segment of its own
    votes: int = 7  # identity: a vote over the track's best frames (largest, sharpest detections)
    min_observations: int = 2  # shorter tracks (one-off false detections) are not reported
    thumbnail_size: int = 112


@dataclass
class Face:
    """One face on one frame: detected there, or (between detections) where its track is predicted."""

    track: int
    box: np.ndarray
    detected: bool
    probabilities: np.ndarray | None = None  # this frame's expression (detected faces only)
    match: FrameMatch | None = None  # this frame's own gallery match, before the track's vote


@dataclass
class FrameResult:
    index: int
    time: float
    faces: list[Face]


@dataclass
class TrackRecord:
    """What is kept of a track: compact per-observation arrays and the best few matches."""

    id: int
    frames: array = field(default_factory=lambda: array("i"))  # 4 bytes per observation
    boxes: array = field(default_factory=lambda: array("f"))  # 4 floats per observation
    probabilities: array = field(default_factory=lambda: array("f"))  # 7 floats per observation
    best: list[tuple[float, int, FrameMatch | None]] = field(
        default_factory=list
    )  # min-heap of (quality, frame, match)
    thumbnail: np.ndarray | None = None  # RGB crop of the best-quality detection
    thumbnail_quality: float = -1.0

    def observe(self, frame: int, face: Face, quality: float, votes: int, crop: Callable[[], np.ndarray]) -> None:
        self.frames.append(frame)
        self.boxes.extend(face.box.astype(np.float32).tolist())
        self.probabilities.extend(face.probabilities.astype(np.float32).tolist())
        entry = (quality, frame, face.match)
        if len(self.best) < votes:
            heapq.heappush(self.best, entry)
        elif quality > self.best[0][0]:
            heapq.heapreplace(self.best, entry)
        if quality > self.thumbnail_quality:
            self.thumbnail, self.thumbnail_quality = crop(), quality

    def identity(self) -> tuple[str, str | None, float | None]:
        """(name, subject id, similarity): the subject most of the best frames accept (at least half
        of them), else unknown with the best similarity seen to anyone (None: empty gallery)."""
        accepted = Counter(m.subject_id for _, _, m in self.best if m is not None and m.accepted)
        similarities = [m.similarity for _, _, m in self.best if m is not None]
        if accepted:
            subject, count = accepted.most_common(1)[0]
            if 2 * count >= len(self.best):
                matches = [m for _, _, m in self.best if m is not None and m.accepted and m.subject_id == subject]
                return matches[0].name or subject, subject, float(np.median([m.similarity for m in matches]))
        return UNKNOWN, None, max(similarities) if similarities else None


def _quality(detection: Detection) -> float:
    """Detections worth voting with: confident and large (small faces embed poorly)."""
    side = min(detection.box[2] - detection.box[0], detection.box[3] - detection.box[1])
    return float(detection.score * min(side, 150.0))


class VideoSession:
    """Frames in, faces with track ids out; `result()` summarises the tracks so far."""

    def __init__(
        self,
        models: Models,
        fps: float,
        identifier: Identifier | None = None,
        options: VideoOptions = VideoOptions(),
        tracker: TrackerConfig | None = None,
    ):
        self.models, self.fps, self.identifier, self.options = models, fps, identifier, options
        self.tracker = Tracker(tracker or models.tracker_config())
        self.records: dict[int, TrackRecord] = {}
        self.frame_count = 0
        self.last_expression: dict[int, np.ndarray] = {}  # track -> probabilities, of the last detection step

    def feed(self, image: np.ndarray) -> FrameResult:
        """One RGB frame (H, W, 3) uint8; detection runs on every `detect_every`-th one."""
        index, time = self.frame_count, self.frame_count / self.fps
        self.frame_count += 1
        if index % self.options.detect_every == 0:
            faces = self._detect(image, index, time)
        else:
            # Between detections: the faces of the last detection step, where their motion puts them now.
            tracks = (self.tracker.tracks.get(i) for i in self.last_expression)
            faces = [Face(t.id, t.predicted(time), False, self.last_expression[t.id]) for t in tracks if t is not None]
        return FrameResult(index, time, faces)

    def _detect(self, image: np.ndarray, index: int, time: float) -> list[Face]:
        models, options = self.models, self.options
        found = models.detector.detect(image, options.min_face_size)[: options.max_faces]
        detections, crops = [], []
        for detection in found:
            try:
                crops.append(expression_crop(image, detection.landmarks))
            except ValueError:  # degenerate landmarks: nothing to read an expression from
                continue
            detections.append(detection)
        self.tracker.expire(time)
        self.last_expression = {}  # only faces detected at this step are shown until the next one
        if not detections:
            return []
        aligned = np.stack([align_face(image, d.landmarks, models.embedder.input_kind) for d in detections])
        embeddings = models.embedder.embed(aligned)
        probabilities = models.expression.probabilities(np.stack(crops), options.flip_expressions)
        ids = self.tracker.update(np.array([d.box for d in detections]), embeddings, time)
        faces = []
        for i, (detection, track_id) in enumerate(zip(detections, ids)):
            face = Face(
                track_id, np.asarray(detection.box, np.float64), True, probabilities[i], self._match(embeddings[i])
            )
            record = self.records.setdefault(track_id, TrackRecord(track_id))
            record.observe(index, face, _quality(detection), options.votes, lambda i=i: self._thumbnail(aligned[i]))
            self.last_expression[track_id] = probabilities[i]
            faces.append(face)
        return faces

    def _match(self, embedding: np.ndarray) -> FrameMatch | None:
        if self.identifier is None:
            return None
        best = self.identifier.best(embedding)
        if best is None:
            return None
        return FrameMatch(
            best.subject_id, best.name, best.face_id, best.similarity, best.similarity >= self.identifier.threshold
        )

    def _thumbnail(self, aligned: np.ndarray) -> np.ndarray:
        size = self.options.thumbnail_size
        return cv2.resize(aligned, (size, size), interpolation=cv2.INTER_AREA)

    def track_summary(self, record: TrackRecord) -> dict:
        options = self.options
        frames_ = np.array(record.frames)
        times = frames_ / self.fps
        smoothed = smooth(
            times, np.frombuffer(record.probabilities, np.float32).reshape(len(frames_), -1), options.smoothing_s
        )
        min_samples = max(1, round(options.min_segment_s * self.fps / options.detect_every))
        name, subject, similarity = record.identity()
        return {
            "id": record.id,
            "identity": name,
            "subject_id": subject,
            "similarity": None if similarity is None else round(similarity, 4),
            "start": round(float(times[0]), 3),
            "end": round(float(times[-1]), 3),
            "start_frame": int(frames_[0]),
            "end_frame": int(frames_[-1]),
            "frames": frames_.tolist(),
            "boxes": np.round(np.frombuffer(record.boxes, np.float32).reshape(-1, 4).astype(np.float64), 1).tolist(),
            "expressions": np.round(smoothed.astype(np.float64), 3).tolist(),
            "dominant": [
                {
                    "expression": EXPRESSIONS[label],
                    "start": round(a / self.fps, 3),
                    "end": round(b / self.fps, 3),
                    "start_frame": a,
                    "end_frame": b,
                }
                for a, b, label in segments(frames_, smoothed.argmax(axis=1), min_samples)
            ],
            "best_frame": max(record.best)[1] if record.best else int(frames_[0]),
            "thumbnail": thumbnail_jpeg(record.thumbnail),  # base64 JPEG of the best detection, aligned
        }

    def reported(self) -> list[TrackRecord]:
        """Tracks long enough to report, longest first."""
        records = [r for r in self.records.values() if len(r.frames) >= self.options.min_observations]
        return sorted(records, key=lambda r: (-len(r.frames), r.id))

    def result(self) -> dict:
        return {
            "fps": round(self.fps, 3),
            "frames": self.frame_count,
            "detect_every": self.options.detect_every,
            "expression_labels": list(EXPRESSIONS),
            "tracks": [self.track_summary(r) for r in self.reported()],
        }


def frame_summary(result: FrameResult, session: VideoSession) -> dict:
    """One frame as JSON: its faces (track, box, the track's identity so far, this frame's expression)
    and the tracks so far (what the WebSocket answers per frame)."""
    faces = []
    for face in result.faces:
        record = session.records.get(face.track)
        name, subject, similarity = record.identity() if record else (UNKNOWN, None, None)
        faces.append(
            {
                "track": face.track,
                "detected": face.detected,
                "box": [round(float(v), 1) for v in face.box],
                "identity": name,
                "subject_id": subject,
                "similarity": similarity,
                "expression": None if face.probabilities is None else EXPRESSIONS[int(np.argmax(face.probabilities))],
            }
        )
    tracks = [
        {
            "id": r.id,
            "identity": r.identity()[0],
            "start": round(r.frames[0] / session.fps, 3),
            "end": round(r.frames[-1] / session.fps, 3),
            "detections": len(r.frames),
        }
        for r in session.reported()
    ]
    return {"frame": result.index, "time": round(result.time, 3), "faces": faces, "tracks": tracks}


def analyze_file(
    path: Path,
    models: Models,
    identifier: Identifier | None = None,
    options: VideoOptions = VideoOptions(),
    limits: VideoLimits | None = None,
    on_frame: Callable[[np.ndarray, FrameResult, VideoSession], None] | None = None,
    tracker: TrackerConfig | None = None,
) -> tuple[VideoSession, dict]:
    """Run a session over a video file, frame by frame; `on_frame(image, result, session)` sees each frame."""
    limits = limits or VideoLimits()
    info = probe(Path(path), limits)
    session = VideoSession(models, info.fps, identifier, options, tracker)
    for image in frames(Path(path), info, limits):
        result = session.feed(image)
        if on_frame is not None:
            on_frame(image, result, session)
    return session, session.result()


PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def photos_by_subject(folder: Path) -> dict[str, list[Path]]:
    """`folder/<name>/*.jpg` (several photos of one person) or `folder/<name>.jpg` (one each)."""
    subjects: dict[str, list[Path]] = {}
    for path in sorted(Path(folder).iterdir()):
        if path.is_dir():
            photos = sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
            if photos:
                subjects.setdefault(path.name, []).extend(photos)
        elif path.suffix.lower() in PHOTO_SUFFIXES:
            subjects.setdefault(path.stem, []).append(path)
    return subjects


def enrol_photos(gallery: Gallery, models: Models, folder: Path) -> dict[str, int]:
    """Enrol the largest face of each photo under its subject (the folder or file name); faces per subject."""
    from stra_face.vision.decode import decode_image

    enrolled = {}
    for subject, photos in photos_by_subject(folder).items():
        gallery.create_subject(subject, subject.replace("_", " ").replace("-", " ").title(), {})
        enrolled[subject] = 0
        for photo in photos:
            image = decode_image(photo.read_bytes(), max_bytes=50 * 2**20)
            found = models.detector.detect(image)
            if not found:
                continue
            embedding = models.embedder.embed(align_face(image, found[0].landmarks, models.embedder.input_kind)[None])[
                0
            ]
            gallery.add_face(subject, f"{subject}-{enrolled[subject]}", embedding, models.embedder.sha256, None)
            enrolled[subject] += 1
    return enrolled
