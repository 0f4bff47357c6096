"""Video files -> RGB frames, one at a time (memory does not grow with the length), with limits
checked from the container's header before any frame is decoded, and again while decoding
(a header can lie about the frame count or the size)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stra_face.vision.decode import ImageError

DEFAULT_FPS = 25.0  # when the container states no (or an absurd) frame rate


class VideoError(ImageError):
    """A client-side video problem (unreadable, empty, too large or too long): a 4xx, never a crash."""


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    width: int
    height: int
    frames: int  # from the header (0 when unknown; the decoder may find fewer)

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


@dataclass(frozen=True)
class VideoLimits:
    max_pixels: int = 3840 * 2160  # per frame
    max_seconds: float | None = None  # longer inputs are refused (None: no limit)
    truncate_seconds: float | None = None  # longer inputs are read only up to here (CLI --max-seconds)


def _capture(path: Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise VideoError("invalid_video", "the file is not a video OpenCV/FFmpeg can read (or it is truncated)")
    return capture


def probe(path: Path, limits: VideoLimits = VideoLimits()) -> VideoInfo:
    """The header's frame rate, size and frame count, refused when beyond the limits."""
    capture = _capture(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        info = VideoInfo(
            fps if 1 <= fps <= 1000 else DEFAULT_FPS,
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))),
        )
    finally:
        capture.release()
    check_size(info.width, info.height, limits.max_pixels)
    if info.width <= 0 or info.height <= 0:
        raise VideoError("invalid_video", "the video has no readable frame size")
    if limits.max_seconds is not None and info.seconds > limits.max_seconds:
        raise VideoError(
            "video_too_long",
            f"the video is {info.seconds:.1f} s long; at most {limits.max_seconds:g} s are accepted",
            413,
        )
    return info


def check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise VideoError(
            "video_too_large",
            f"frames are {width}x{height} = {width * height} pixels; at most {max_pixels} are accepted",
            413,
        )


def frames(path: Path, info: VideoInfo, limits: VideoLimits = VideoLimits()) -> Iterator[np.ndarray]:
    """Decoded RGB frames in order. Ends early at `truncate_seconds`; refuses a video that turns out
    longer than `max_seconds` or bigger than `max_pixels`, and one with no decodable frame at all."""
    capture = _capture(path)
    count = 0
    try:
        while True:
            if limits.truncate_seconds is not None and count >= limits.truncate_seconds * info.fps:
                break
            if limits.max_seconds is not None and count > limits.max_seconds * info.fps:
                raise VideoError(
                    "video_too_long", f"the video runs past {limits.max_seconds:g} s; at most that is accepted", 413
                )
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            check_size(frame.shape[1], frame.shape[0], limits.max_pixels)
            count += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()
    if count == 0:
        raise VideoError("empty_video", "the video has no decodable frame")
