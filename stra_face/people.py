"""`stra_face.Gallery`: enrol people and identify faces in process, in the service's gallery store.

The store is the service's own (`stra_face.gallery`: SQLite file, or PostgreSQL for a DSN), so a
gallery filled here is searched by `stra-face serve` pointed at it, and the other way round.
Answers are dicts with the keys of the REST JSON (POST /v1/subjects/{id}/faces, POST /v1/identify,
GET /v1/subjects).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stra_face.analyzer import FaceAnalyzer, ImageInput, counted, decision_of, default_analyzer, detected
from stra_face.config import PipelineSettings
from stra_face.gallery import GalleryError, Subject, SubjectFace, open_gallery
from stra_face.vision.decode import ImageError
from stra_face.vision.identify import assign_subjects
from stra_face.vision.inference import sha256_file
from stra_face.vision.thresholds import choose_open_set_threshold

DSN_SCHEMES = ("postgresql://", "postgres://")


def face_out(face: SubjectFace, current_sha256: str) -> dict:
    return {
        "id": face.id,
        "model_sha256": face.model_sha256,
        "created_at": face.created_at,
        "has_image": face.has_image,
        "current_model": face.model_sha256 == current_sha256,
    }


def subject_out(subject: Subject, current_sha256: str) -> dict:
    return asdict(subject) | {"faces": [face_out(f, current_sha256) for f in subject.faces]}


def _named(image: ImageInput) -> str:
    return str(image) if isinstance(image, (str, Path)) else "the image"


class Gallery:
    """`Gallery("people.sqlite3")` or `Gallery("postgresql://user@host/db")` (the `postgres` extra).

    `analyzer`: the models that embed faces (the shared default one when None). Close it, or use
    it as a context manager."""

    def __init__(self, location: str | Path, analyzer: FaceAnalyzer | None = None, **postgres_options: Any):
        self._analyzer = analyzer
        dsn = str(location) if str(location).startswith(DSN_SCHEMES) else None
        if dsn is None:
            Path(location).parent.mkdir(parents=True, exist_ok=True)
        self.store = open_gallery(location, dsn, **postgres_options)

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    @property
    def analyzer(self) -> FaceAnalyzer:
        """The given analyzer, else the shared default one (its models load on first use)."""
        if self._analyzer is None:
            self._analyzer = default_analyzer()
        return self._analyzer

    @functools.cached_property
    def _sha256(self) -> str:
        """The embedding model's sha256, which keys its faces: listing subjects needs no model loaded."""
        return self._analyzer.model_sha256 if self._analyzer else sha256_file(PipelineSettings().embedding_model)

    def subject(self, subject_id: str) -> dict:
        return subject_out(self.store.get_subject(subject_id), self._sha256)

    def subjects(self, limit: int = 100, offset: int = 0) -> dict:
        """~ GET /v1/subjects: a page of subjects (oldest first), the total, and the enrolments per model."""
        subjects, total = self.store.list_subjects(limit, offset)
        current, other = self.store.face_counts(self._sha256)
        return {
            "total": total,
            "subjects": [subject_out(s, self._sha256) for s in subjects],
            "enrolments": {"current_model": current, "need_reenrolment": other},
        }

    def delete(self, subject_id: str) -> None:
        self.store.delete_subject(subject_id)

    def enroll(
        self,
        subject_id: str,
        image: ImageInput,
        *,
        name: str | None = None,
        metadata: dict | None = None,
        select: str = "single",
        flip: bool | None = None,
        **options: Any,
    ) -> dict:
        """~ POST /v1/subjects/{id}/faces, creating the subject first when it is new.

        select: "single" refuses an image of several faces (as the service does), "largest" takes the largest."""
        if select not in ("single", "largest"):
            raise ValueError(f"select is 'single' or 'largest', not {select!r}")
        result = self.analyzer.faces_with_embeddings(image, _named(image), flip=flip, **options)
        if len(result.detections) > 1 and select == "single":
            raise ImageError(
                "multiple_faces",
                f"{result.faces_found} faces found in {_named(image)}; use a photo of one face or select='largest'",
            )
        self._ensure_subject(subject_id, name, metadata or {})
        face = self.store.add_face(subject_id, uuid.uuid4().hex, result.embeddings[0], self._sha256, None)
        return {
            "subject_id": subject_id,
            "face": face_out(face, self._sha256),
            "detection": detected(result.detections[0], result.qualities[0]),
        }

    def _ensure_subject(self, subject_id: str, name: str | None, metadata: dict) -> None:
        try:
            self.store.get_subject(subject_id)
        except GalleryError as error:
            if error.code != "subject_not_found":
                raise
            self.store.create_subject(subject_id, name, metadata)

    def identify(
        self,
        image: ImageInput,
        *,
        top_k: int = 5,
        fpir: float | None = None,
        threshold: float | None = None,
        flip: bool | None = None,
        **options: Any,
    ) -> dict:
        """~ POST /v1/identify: per face, the subject it is or unknown (open set: the threshold for `fpir`, the
        default FPIR when None, over the gallery's size), and the top_k subjects by their best face."""
        analyzer = self.analyzer
        chosen = choose_open_set_threshold(
            analyzer.calibration,
            analyzer.settings.default_fpir if fpir is None else fpir,
            self.store.face_counts(self._sha256)[0],
            threshold,
            model=self._sha256,
            source=str(analyzer.settings.thresholds_file),
        )
        result = analyzer.faces_with_embeddings(image, _named(image), flip=flip, **options)
        candidates = [self.store.search(embedding, self._sha256, top_k) for embedding in result.embeddings]
        faces = [
            detected(detection, quality)
            | {
                "subject_id": subject,
                "unknown": subject is None,
                "matches": [
                    asdict(m)
                    | {
                        "far_at_score": analyzer.far_at_score(m.similarity),
                        "accepted": m.similarity >= chosen.threshold,
                    }
                    for m in matches
                ],
            }
            for detection, quality, matches, subject in zip(
                result.detections, result.qualities, candidates, assign_subjects(candidates, chosen.threshold)
            )
        ]
        return counted(result) | {"decision": decision_of(chosen), "model_sha256": self._sha256, "faces": faces}
