"""What every gallery backend provides."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


class GalleryError(Exception):
    def __init__(self, code: str, message: str, status: int):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def subject_not_found(subject_id: str) -> GalleryError:
    return GalleryError("subject_not_found", f"no subject {subject_id!r}", 404)


@dataclass
class SubjectFace:
    id: str
    subject_id: str
    model_sha256: str
    created_at: str
    has_image: bool = False


@dataclass
class Subject:
    id: str
    name: str | None
    metadata: dict
    created_at: str
    faces: list[SubjectFace] = field(default_factory=list)


@dataclass
class Match:
    subject_id: str
    name: str | None
    face_id: str
    similarity: float


class Gallery(ABC):
    """Embeddings are stored per model sha256: a face enrolled with one model never meets another's."""

    @abstractmethod
    def create_subject(self, subject_id: str, name: str | None, metadata: dict) -> Subject: ...

    @abstractmethod
    def get_subject(self, subject_id: str) -> Subject: ...

    @abstractmethod
    def list_subjects(self, limit: int, offset: int) -> tuple[list[Subject], int]: ...

    @abstractmethod
    def delete_subject(self, subject_id: str) -> None: ...

    @abstractmethod
    def add_face(self, subject_id: str, face_id: str, embedding: np.ndarray, model_sha256: str, image: bytes | None) -> SubjectFace: ...

    @abstractmethod
    def delete_face(self, subject_id: str, face_id: str) -> None: ...

    @abstractmethod
    def search(self, embedding: np.ndarray, model_sha256: str, top_k: int) -> list[Match]:
        """Best face per subject, subjects ranked by cosine similarity."""

    @abstractmethod
    def ping(self) -> None: ...

    def close(self) -> None:
        pass
