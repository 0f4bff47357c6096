"""Request and response models of the API."""
from __future__ import annotations

from pydantic import BaseModel, Field

from service.pipeline.preprocess import EXPRESSIONS


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


class DetectedFace(BaseModel):
    box: Box
    score: float = Field(description="detector confidence")
    landmarks: list[tuple[float, float]] = Field(description="left eye, right eye, nose, mouth left, mouth right (x, y)")


class ImageSize(BaseModel):
    width: int
    height: int


class FaceCount(BaseModel):
    faces_found: int = Field(description="faces the detector found; `faces` lists the largest STRA_MAX_FACES of them")
    truncated: bool = Field(description="true when STRA_MAX_FACES cut the list (faces_found > len(faces))")


class DetectResponse(FaceCount):
    image: ImageSize
    faces: list[DetectedFace]


class EmbeddedFace(DetectedFace):
    embedding: list[float] = Field(description="L2-normalised embedding")


class EmbedResponse(FaceCount):
    image: ImageSize
    model_sha256: str
    faces: list[EmbeddedFace]


class Expression(BaseModel):
    dominant: str = Field(examples=["happy"])
    probabilities: dict[str, float] = Field(description=f"one probability per class: {', '.join(EXPRESSIONS)}")


class ExpressionFace(DetectedFace):
    expression: Expression


class ExpressionResponse(FaceCount):
    image: ImageSize
    faces: list[ExpressionFace]


class AnalyzedFace(DetectedFace):
    embedding: list[float]
    expression: Expression


class AnalyzeResponse(FaceCount):
    image: ImageSize
    model_sha256: str
    faces: list[AnalyzedFace]


class Decision(BaseModel):
    threshold: float = Field(description="cosine similarity at or above which faces match")
    far: float | None = Field(description="false-accept rate the threshold was calibrated for; null for a caller-given threshold")
    calibration: str | None = Field(description="where the threshold comes from")


class VerifyPair(BaseModel):
    face1: int = Field(description="index into faces1")
    face2: int = Field(description="index into faces2")
    similarity: float
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
    id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$", description="generated when absent")
    name: str | None = Field(default=None, max_length=256)
    metadata: dict = Field(default_factory=dict)


class SubjectFaceOut(BaseModel):
    id: str
    model_sha256: str
    created_at: str
    has_image: bool


class SubjectOut(BaseModel):
    id: str
    name: str | None
    metadata: dict
    created_at: str
    faces: list[SubjectFaceOut]


class SubjectList(BaseModel):
    total: int
    subjects: list[SubjectOut]


class EnrollResponse(BaseModel):
    subject_id: str
    face: SubjectFaceOut
    detection: DetectedFace


class IdentifyMatch(BaseModel):
    subject_id: str
    name: str | None
    face_id: str
    similarity: float
    accepted: bool = Field(description="similarity >= the decision threshold")


class IdentifiedFace(DetectedFace):
    matches: list[IdentifyMatch]


class IdentifyResponse(FaceCount):
    decision: Decision
    model_sha256: str
    faces: list[IdentifiedFace]
