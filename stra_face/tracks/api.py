"""`sf.video(path, gallery=...)`: the Python API's video analysis, frame by frame."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from stra_face.tracks.analyzer import Identifier, Models, VideoOptions, VideoSession, frame_summary
from stra_face.tracks.source import VideoLimits, frames, probe

if TYPE_CHECKING:
    from stra_face.analyzer import FaceAnalyzer
    from stra_face.people import Gallery


class VideoRun:
    """Iterate for one dict per frame (as the /v1/stream WebSocket answers); `result()` gives the
    tracks (as POST /v1/video), reading the rest of the video first if the iteration stopped early."""

    def __init__(
        self,
        path: str | Path,
        analyzer: FaceAnalyzer,
        gallery: Gallery | None = None,
        *,
        far: float | None = None,
        threshold: float | None = None,
        detect_every: int = 3,
        max_seconds: float | None = None,
    ):
        self.path, self.limits = Path(path), VideoLimits(truncate_seconds=max_seconds)
        self.info = probe(self.path, self.limits)  # a bad file fails here, before any model runs
        models = Models.of(analyzer)
        identifier = None
        if gallery is not None:
            identifier = Identifier(gallery.store, analyzer.model_sha256, analyzer.decision(far, threshold).threshold)
        self.session = VideoSession(models, self.info.fps, identifier, VideoOptions(detect_every=detect_every))
        self._frames = frames(self.path, self.info, self.limits)

    def __iter__(self) -> Iterator[dict]:
        for image in self._frames:
            yield frame_summary(self.session.feed(image), self.session)

    def result(self) -> dict:
        for _ in self:
            pass
        return self.session.result()
