"""SQLite gallery: WAL journal, one transaction per write, exact cosine search over a cached matrix."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from stra_face.gallery.base import Gallery, GalleryError, Match, Subject, SubjectFace, rank_subjects, subject_not_found

SCHEMA = """
CREATE TABLE IF NOT EXISTS subjects (
    id TEXT PRIMARY KEY,
    name TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS faces (
    id TEXT PRIMARY KEY,
    subject_id TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    model_sha256 TEXT NOT NULL,
    embedding BLOB NOT NULL,
    image BLOB,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_by_subject ON faces(subject_id);
CREATE INDEX IF NOT EXISTS faces_by_model ON faces(model_sha256);
"""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class SQLiteGallery(Gallery):
    """One connection shared by all threads behind a lock (SQLite has one writer anyway).

    The search matrix of each model is cached and rebuilt after a write (by this or another
    process), so identification costs one matrix-vector product instead of a table scan.
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()
        self._cache: dict[str, tuple[np.ndarray, list[tuple[str, str, str | None]]]] = {}
        self._data_version = None
        self.kind = "sqlite"

    def _write(self, statements):
        """Runs callable(statements) inside BEGIN IMMEDIATE ... COMMIT, rolling back on error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = statements(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._cache.clear()
            return result

    def create_subject(self, subject_id: str, name: str | None, metadata: dict) -> Subject:
        created = now()

        def insert(db):
            try:
                db.execute(
                    "INSERT INTO subjects(id, name, metadata, created_at) VALUES (?, ?, ?, ?)",
                    (subject_id, name, json.dumps(metadata), created),
                )
            except sqlite3.IntegrityError:
                raise GalleryError("subject_exists", f"subject {subject_id!r} already exists", 409) from None

        self._write(insert)
        return Subject(subject_id, name, metadata, created)

    def _faces(self, subject_id: str) -> list[SubjectFace]:
        rows = self._db.execute(
            "SELECT id, subject_id, model_sha256, created_at, image IS NOT NULL FROM faces WHERE subject_id = ? "
            "ORDER BY created_at, id",
            (subject_id,),
        ).fetchall()
        return [SubjectFace(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    def get_subject(self, subject_id: str) -> Subject:
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, metadata, created_at FROM subjects WHERE id = ?", (subject_id,)
            ).fetchone()
            if row is None:
                raise subject_not_found(subject_id)
            return Subject(row[0], row[1], json.loads(row[2]), row[3], self._faces(subject_id))

    def list_subjects(self, limit: int, offset: int) -> tuple[list[Subject], int]:
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM subjects").fetchone()[0]
            rows = self._db.execute(
                "SELECT id, name, metadata, created_at FROM subjects ORDER BY created_at, id LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
            return [Subject(r[0], r[1], json.loads(r[2]), r[3], self._faces(r[0])) for r in rows], total

    def delete_subject(self, subject_id: str) -> None:
        def delete(db):
            if db.execute("DELETE FROM subjects WHERE id = ?", (subject_id,)).rowcount == 0:
                raise subject_not_found(subject_id)

        self._write(delete)

    def add_face(
        self, subject_id: str, face_id: str, embedding: np.ndarray, model_sha256: str, image: bytes | None
    ) -> SubjectFace:
        created = now()
        blob = np.asarray(embedding, np.float32).tobytes()

        def insert(db):
            if db.execute("SELECT 1 FROM subjects WHERE id = ?", (subject_id,)).fetchone() is None:
                raise subject_not_found(subject_id)
            db.execute(
                "INSERT INTO faces(id, subject_id, model_sha256, embedding, image, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (face_id, subject_id, model_sha256, blob, image, created),
            )

        self._write(insert)
        return SubjectFace(face_id, subject_id, model_sha256, created, image is not None)

    def delete_face(self, subject_id: str, face_id: str) -> None:
        def delete(db):
            if db.execute("DELETE FROM faces WHERE id = ? AND subject_id = ?", (face_id, subject_id)).rowcount == 0:
                raise GalleryError("face_not_found", f"subject {subject_id!r} has no face {face_id!r}", 404)

        self._write(delete)

    def _matrix(self, model_sha256: str):
        with self._lock:
            # data_version changes when another connection (another worker process) commits.
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                self._cache.clear()
                self._data_version = version
            if model_sha256 not in self._cache:
                rows = self._db.execute(
                    "SELECT f.id, f.subject_id, s.name, f.embedding "
                    "FROM faces f JOIN subjects s ON s.id = f.subject_id WHERE f.model_sha256 = ?",
                    (model_sha256,),
                ).fetchall()
                matrix = (
                    np.stack([np.frombuffer(r[3], np.float32) for r in rows]) if rows else np.zeros((0, 0), np.float32)
                )
                self._cache[model_sha256] = (matrix, [(r[0], r[1], r[2]) for r in rows])
            return self._cache[model_sha256]

    def search(self, embedding: np.ndarray, model_sha256: str, top_k: int) -> list[Match]:
        matrix, keys = self._matrix(model_sha256)
        return rank_subjects(matrix, keys, embedding, top_k)

    def face_counts(self, model_sha256: str) -> tuple[int, int]:
        with self._lock:
            current, total = self._db.execute(
                "SELECT COALESCE(SUM(model_sha256 = ?), 0), COUNT(*) FROM faces", (model_sha256,)
            ).fetchone()
        return int(current), int(total - current)

    def ping(self) -> None:
        with self._lock:
            self._db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            self._db.close()
