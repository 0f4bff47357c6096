"""What the service and the Python API / CLI both read: model files and pipeline defaults.

Environment variables with the prefix STRA_ (or a .env file) override them, for both: a
`FaceAnalyzer` built in a shell where `stra-face serve` would find its models finds the same ones
and gives the same numbers. pydantic-settings only: no FastAPI, no torch.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

ASSETS = Path(__file__).resolve().parent / "assets" / "models"


class PipelineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STRA_", env_file=".env", extra="ignore")

    # The shipped model with the best CFP-FP (README, *Measured here*): dlib's ResNet ported to ONNX.
    # A student shipped by `python -m stra_face.training.face ship` (runs/face/<run>.onnx + card) is served
    # by pointing this at it and thresholds_file at the thresholds.json written beside it.
    embedding_model: Path = ASSETS / "dlib_resnet_v1.onnx"
    expression_model: Path = ASSETS / "expression.onnx"
    thresholds_file: Path = ASSETS / "thresholds.json"
    # ONNX Runtime providers in order of preference; unavailable ones are skipped (and logged).
    providers: list[str] = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    intra_op_threads: int = 0  # 0: ONNX Runtime's default

    max_image_bytes: int = 10 * 2**20
    max_image_pixels: int = 40_000_000
    max_faces: int = 64  # faces per image passed to the models (largest first)
    min_face_size: int = 20  # smallest face (original pixels) when the request names none, raised on large images:
    # the detector's first pyramid level is at most `detection_size` px long, so by default it looks for faces
    # of max(min_face_size, 12 * long side / detection_size) px and its cost stops growing with the upload.
    detection_size: int = 512
    # The small-face pass (docs/detection.md, Crowds): where P-Net flags likely small faces on an image larger than
    # the pyramid, search them down to min_face_size. Off: the whole-image pass alone (a crowd's faces under
    # 12 * long side / detection_size px are not searched; its cost stops there).
    small_faces: bool = True
    detection_threshold: float = 0.9
    # Face-quality gate (stra_face.vision.quality): faces below it are dropped unless a request passes
    # keep_low_quality=true (/v1/detect lists them under `rejected`, with the reasons).
    quality_min_score: float = 0.95
    quality_min_eye_distance: float = 12.0  # pixels between the eyes
    quality_min_sharpness: float = 20.0  # variance of the Laplacian of the aligned 112x112 grey face
    flip_embeddings: bool = False  # default of the per-request `flip` option
    # Mirror TTA for expressions: +1.0 point on FER2013 PrivateTest for the shipped model (65.62 -> 66.62%),
    # at twice the faces in the expression model's one call.
    flip_expressions: bool = True

    default_far: float = 1e-3
    # /v1/identify: share of probes of people not enrolled that may be matched to somebody (open set).
    default_fpir: float = 1e-2
    gallery_path: Path = Path("data/gallery.sqlite3")
    # postgresql://user:password@host/db — when set, the gallery lives in PostgreSQL, not gallery_path.
    gallery_dsn: str | None = None
    # pgvector (PostgreSQL only, when the server has the extension): from this many faces on, a
    # search re-ranks the HNSW index's best `gallery_ann_candidates` faces instead of scanning all.
    gallery_pgvector: bool = True
    gallery_ann_min_faces: int = 10_000
    gallery_ann_candidates: int = 100
    store_images: bool = False  # default of the per-enrollment `store_image` option
