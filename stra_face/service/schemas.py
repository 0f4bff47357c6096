"""Request and response models of the API."""

from __future__ import annotations

import json

from pydantic import BaseModel, Field, field_validator, model_serializer

from stra_face.vision.preprocess import EXPRESSIONS


class ErrorDetail(BaseModel):
    code: str = Field(examples=["no_face"])
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Box(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float


class FaceQuality(BaseModel):
    passed: bool = Field(description="the face passed the quality gate")
    reasons: list[str] = Field(
        description="failed checks: low_detector_score, too_small, implausible_landmarks, blurry", examples=[["blurry"]]
    )
    measures: dict[str, float] = Field(
        description=(
            "what the checks measured: detector_score, eye_distance (px), nose_depth, nose_offset, eye_to_box, "
            "handedness, sharpness"
        )
    )


class DetectedFace(BaseModel):
    box: Box
    score: float = Field(description="detector confidence")
    landmarks: list[tuple[float, float]] = Field(
        description="left eye, right eye, nose, mouth left, mouth right (x, y)"
    )
    quality: FaceQuality


class ImageSize(BaseModel):
    width: int
    height: int


class FaceCount(BaseModel):
    faces_found: int = Field(description="faces the detector found; `faces` lists the largest STRA_MAX_FACES of them")
    truncated: bool = Field(description="true when STRA_MAX_FACES cut the list (faces_found > len(faces))")
    low_quality: int = Field(
        description=(
            "faces the detector found below the quality gate, not counted in faces_found "
            "(keep_low_quality=true keeps them)"
        )
    )


class DetectResponse(FaceCount):
    image: ImageSize
    faces: list[DetectedFace]
    rejected: list[DetectedFace] = Field(
        description="the faces below the quality gate, each with the reasons (empty with keep_low_quality=true)"
    )


class EmbeddedFace(DetectedFace):
    embedding: list[float] = Field(description="L2-normalised embedding")


class EmbedResponse(FaceCount):
    image: ImageSize
    model_sha256: str
    faces: list[EmbeddedFace]


class Expression(BaseModel):
    dominant: str = Field(examples=["happy"])
    probabilities: dict[str, float] = Field(description=f"one probability per class: {', '.join(EXPRESSIONS)}")


class ExpressionModes(BaseModel):
    """What the expression model attended to: the StRA mode coefficients r_ig of its last StRA block."""

    groups: int = Field(description="G, the number of modes (8 for the shipped ResNet50-StRA)", examples=[8])
    grid: tuple[int, int] = Field(
        description="rows, columns of each map (6 x 6 for the shipped model)", examples=[(6, 6)]
    )
    cell_pixels: tuple[float, float] = Field(
        description="height, width in pixels of the 48x48 expression crop that one grid cell covers: cell (i, j) "
        "is centred on crop pixel ((j + 0.5) * width, (i + 0.5) * height); "
        "the crop is the face aligned on its landmarks",
        examples=[(8.0, 8.0)],
    )
    maps: list[list[list[float]]] = Field(
        description="G maps of rows x columns values in [0, 1] (sigmoid gates: each mode independently, 1 = the "
        "location belongs to the mode); computed on the unmirrored crop"
    )
    overlay_png: str | None = Field(
        default=None,
        description=(
            "base64 PNG, only with modes_overlay=true: "
            "the crop (2x) and each map over it (jet: blue 0 .. red 1), in one row"
        ),
    )


class _OmitsAbsentModes(BaseModel):
    """Faces serialise `modes` only when it was asked for: no payload when off."""

    @model_serializer(mode="wrap")
    def _omit_absent_modes(self, handler):
        data = handler(self)
        if isinstance(data, dict) and data.get("modes") is None:
            data.pop("modes", None)
        return data


class ExpressionFace(DetectedFace, _OmitsAbsentModes):
    expression: Expression
    modes: ExpressionModes | None = Field(default=None, description="only with modes=true")


class ExpressionResponse(FaceCount):
    image: ImageSize
    faces: list[ExpressionFace]


class AnalyzedFace(DetectedFace, _OmitsAbsentModes):
    embedding: list[float]
    expression: Expression
    modes: ExpressionModes | None = Field(default=None, description="only with modes=true")


class AnalyzeResponse(FaceCount):
    image: ImageSize
    model_sha256: str
    faces: list[AnalyzedFace]


class Decision(BaseModel):
    threshold: float = Field(description="cosine similarity at or above which faces match")
    far: float | None = Field(
        description=(
            "false-accept rate (per comparison) of the threshold on the calibration pairs; "
            "null for a caller-given threshold"
        )
    )
    requested_far: float | None = Field(default=None, description="the FAR asked for (1:N: FPIR / gallery_faces)")
    clamped: bool = Field(
        default=False,
        description="the requested FAR / FPIR could not be met exactly: `far` / `fpir` say what is used instead",
    )
    calibration: str | None = Field(description="where the threshold comes from")
    fpir: float | None = Field(
        default=None,
        description=(
            "1:N only: false-positive identification rate of the threshold, ~ gallery_faces * far: "
            "how often someone not enrolled is matched to somebody"
        ),
    )
    requested_fpir: float | None = Field(default=None, description="1:N only: the FPIR asked for")
    gallery_faces: int | None = Field(
        default=None, description="1:N only: gallery faces searched (enrolled with the current model)"
    )


class VerifyPair(BaseModel):
    face1: int = Field(description="index into faces1")
    face2: int = Field(description="index into faces2")
    similarity: float
    far_at_score: float | None = Field(
        description=(
            "share of the calibration's impostor pairs scoring this high or higher: "
            "the FAR of a threshold set at this similarity (null without a calibration)"
        )
    )
    verified: bool


class VerifyResponse(BaseModel):
    verified: bool = Field(description="the best pair's decision")
    similarity: float = Field(description="the best pair's cosine similarity")
    decision: Decision
    best: VerifyPair
    pairs: list[VerifyPair]
    faces1: list[DetectedFace]
    faces2: list[DetectedFace]
    faces1_found: int = Field(description="faces found in image1; faces1 lists the largest STRA_MAX_FACES")
    faces2_found: int
    truncated: bool = Field(description="true when STRA_MAX_FACES cut faces1 or faces2")
    model_sha256: str


class SubjectCreate(BaseModel):
    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:@-]+$",
        description="generated when absent; `.` and `..` are refused (they cannot be used in a URL path)",
    )
    name: str | None = Field(default=None, max_length=256)
    metadata: dict = Field(
        default_factory=dict,
        description="free JSON object: at most 16 KiB as JSON and 8 levels deep (STRA_MAX_METADATA_*)",
    )

    @field_validator("id")
    @classmethod
    def not_a_dot_segment(cls, value: str | None) -> str | None:
        if value in (".", ".."):
            raise ValueError("'.' and '..' are not subject ids (clients and proxies rewrite them out of URL paths)")
        return value

    @field_validator("metadata")
    @classmethod
    def metadata_is_storable_json(cls, value: dict) -> dict:  # (pydantic refuses lone surrogates in `name` itself)
        _storable_json(value)
        return value


def _storable_json(value) -> None:
    """What is stored must read back: JSON escapes let a client send a lone surrogate ("\\ud800"),
    which Python keeps in a str but no UTF-8 encoder (the database's, the response's) accepts."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), which is not Unicode text"
        ) from None
    except ValueError:
        raise ValueError("holds NaN or an infinite number, which are not JSON") from None


class SubjectFaceOut(BaseModel):
    id: str
    model_sha256: str
    created_at: str
    has_image: bool
    current_model: bool = Field(
        description="enrolled with the embedding model now serving; other faces are not searched until re-enrolled"
    )


class SubjectOut(BaseModel):
    id: str
    name: str | None
    metadata: dict
    created_at: str
    faces: list[SubjectFaceOut]


class Enrolments(BaseModel):
    current_model: int = Field(description="gallery faces enrolled with the embedding model now serving (searched)")
    need_reenrolment: int = Field(description="faces enrolled with another embedding model: kept, not searched")


class SubjectList(BaseModel):
    total: int
    subjects: list[SubjectOut]
    enrolments: Enrolments


class EnrollResponse(BaseModel):
    subject_id: str
    face: SubjectFaceOut
    detection: DetectedFace


class IdentifyMatch(BaseModel):
    subject_id: str
    name: str | None
    face_id: str
    similarity: float
    far_at_score: float | None = Field(description="the FAR of a 1:1 threshold set at this similarity (see VerifyPair)")
    accepted: bool = Field(description="similarity >= the decision threshold")


class IdentifiedFace(DetectedFace):
    subject_id: str | None = Field(
        description=(
            "who this face is: the subject assigned to it, "
            "or null (unknown) when no candidate passes the open-set threshold"
        )
    )
    unknown: bool = Field(
        description=(
            "no enrolled subject passes the threshold for this face "
            "(or the one that does is someone else's in this photo)"
        )
    )
    matches: list[IdentifyMatch]


class IdentifyResponse(FaceCount):
    decision: Decision
    model_sha256: str
    faces: list[IdentifiedFace]
