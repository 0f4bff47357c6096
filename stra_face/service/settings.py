"""Service settings, read from the environment (prefix STRA_) or a .env file.

Model files and pipeline defaults are `PipelineSettings`, shared with the Python API and the CLI."""

from __future__ import annotations

from stra_face.config import ASSETS, PipelineSettings

__all__ = ["ASSETS", "Settings"]


class Settings(PipelineSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1

    # Every other request body (subject JSON): limit, nesting and the metadata stored per subject.
    max_json_body_bytes: int = 256 * 1024
    max_metadata_bytes: int = 16 * 1024
    max_metadata_depth: int = 8
    # Slow clients: the request headers must arrive within header_timeout_s, the body within
    # body_timeout_s (408 then); idle keep-alive connections close after keep_alive_timeout_s.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_timeout_s: int = 5
    # Image requests (a verify counts once) in the pipeline at once; more answer 503 + Retry-After
    # before their body is read.
    max_image_requests: int = 32
    # POST /v1/video: the upload (413 beyond), its length (413 beyond) and frame size (413 beyond);
    # the file is read frame by frame, so memory does not grow with its length.
    max_video_bytes: int = 200 * 2**20
    max_video_seconds: float = 600.0
    max_video_pixels: int = 1920 * 1080
    # The memory bound: pixels of decoding and detection work in flight, summed over admitted requests
    # (an image's pixels plus 4x those of the detector's first pyramid level; docs/memory.md). Beyond
    # it requests get 503 + Retry-After; a single request that needs more gets 413.
    max_pixels_in_flight: int = 90_000_000  # a verify of two 40 MP images, with their pyramids

    batch_max_size: int = 64
    batch_max_wait_ms: float = 5.0
    batch_queue_size: int = 1024  # faces waiting per model; beyond that requests get 503

    api_keys: list[str] = []  # empty: no authentication
