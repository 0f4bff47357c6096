"""Service settings, read from the environment (prefix STRA_) or a .env file."""
from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "models"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STRA_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1

    # The shipped model with the best CFP-FP (README, *Measured here*): dlib's ResNet ported to ONNX.
    # A student shipped by `python -m stra_face.training.face ship` lands beside it as face_embedding.onnx.
    embedding_model: Path = ASSETS / "dlib_resnet_v1.onnx"
    expression_model: Path = ASSETS / "expression.onnx"
    thresholds_file: Path = ASSETS / "thresholds.json"
    # ONNX Runtime providers in order of preference; unavailable ones are skipped (and logged).
    providers: list[str] = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    intra_op_threads: int = 0  # 0: ONNX Runtime's default

    max_image_bytes: int = 10 * 2**20
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
    # before their body is read. Also the memory bound: each holds at most its images decoded.
    max_image_requests: int = 32
    max_image_pixels: int = 40_000_000
    # POST /v1/video: the upload (413 beyond), its length (413 beyond) and frame size (413 beyond);
    # the file is read frame by frame, so memory does not grow with its length.
    max_video_bytes: int = 200 * 2**20
    max_video_seconds: float = 600.0
    max_video_pixels: int = 1920 * 1080
    max_faces: int = 64  # faces per image passed to the models (largest first)
    min_face_size: int = 20  # smallest face (original pixels) when the request names none, raised on large images:
    # the detector's first pyramid level is at most `detection_size` px long, so by default it looks for faces
    # of max(min_face_size, 12 * long side / detection_size) px and its cost stops growing with the upload.
    detection_size: int = 512
    detection_threshold: float = 0.9
    flip_embeddings: bool = False  # default of the per-request `flip` option
    # Mirror TTA for expressions: +0.6 points on FER2013 PrivateTest for the shipped model (62.2 -> 62.7%),
    # at twice the faces in the expression model's one call.
    flip_expressions: bool = True

    batch_max_size: int = 64
    batch_max_wait_ms: float = 5.0
    batch_queue_size: int = 1024  # faces waiting per model; beyond that requests get 503

    default_far: float = 1e-3
    gallery_path: Path = Path("data/gallery.sqlite3")
    # postgresql://user:password@host/db — when set, the gallery lives in PostgreSQL, not gallery_path.
    gallery_dsn: str | None = None
    # pgvector (PostgreSQL only, when the server has the extension): from this many faces on, a
    # search re-ranks the HNSW index's best `gallery_ann_candidates` faces instead of scanning all.
    gallery_pgvector: bool = True
    gallery_ann_min_faces: int = 10_000
    gallery_ann_candidates: int = 100
    store_images: bool = False  # default of the per-enrollment `store_image` option

    api_keys: list[str] = []  # empty: no authentication
