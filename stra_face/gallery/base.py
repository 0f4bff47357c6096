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


def rank_subjects(
    matrix: np.ndarray, keys: list[tuple[str, str, str | None]], embedding: np.ndarray, top_k: int
) -> list[Match]:
    """Exact cosine search: rows of `matrix` are unit embeddings keyed (face_id, subject_id, name);
    the best face of each subject counts, subjects ranked by it."""
    if not keys:
        return []
    similarities = matrix @ np.asarray(embedding, np.float32)
    candidates = min(len(keys), 8 * top_k)
    while True:  # sort only the best candidates; widen when faces of few subjects fill them
        if candidates < len(keys):
            top = np.argpartition(-similarities, candidates - 1)[:candidates]
            order = top[np.argsort(-similarities[top])]
        else:
            order = np.argsort(-similarities)
        best: dict[str, Match] = {}
        for index in order:
            face_id, subject_id, name = keys[index]
            if subject_id not in best:
                best[subject_id] = Match(subject_id, name, face_id, float(similarities[index]))
                if len(best) == top_k:
                    return list(best.values())
        if candidates >= len(keys):
            return list(best.values())
        candidates = min(len(keys), 4 * candidates)


class Gallery(ABC):
    """Embeddings are stored per model sha256: a face enrolled with one model never meets another's.

    After a switch of embedding model, faces enrolled with the old one are kept but not searched
    (`face_counts` tells how many need re-enrolment); switching back makes them searchable again."""

    @abstractmethod
    def create_subject(self, subject_id: str, name: str | None, metadata: dict) -> Subject: ...

    @abstractmethod
    def get_subject(self, subject_id: str) -> Subject: ...

    @abstractmethod
    def list_subjects(self, limit: int, offset: int) -> tuple[list[Subject], int]: ...

    @abstractmethod
    def delete_subject(self, subject_id: str) -> None: ...

    @abstractmethod
    def add_face(
        self, subject_id: str, face_id: str, embedding: np.ndarray, model_sha256: str, image: bytes | None
    ) -> SubjectFace: ...

    @abstractmethod
    def delete_face(self, subject_id: str, face_id: str) -> None: ...

    @abstractmethod
    def search(self, embedding: np.ndarray, model_sha256: str, top_k: int) -> list[Match]:
        """Best face per subject, subjects ranked by cosine similarity."""

    @abstractmethod
    def face_counts(self, model_sha256: str) -> tuple[int, int]:
        """(faces enrolled with this model, faces enrolled with any other model)."""

    @abstractmethod
    def ping(self) -> None: ...

    def close(self) -> None:
        """Release what the gallery holds; by default it holds nothing."""
        return
