"""PostgreSQL gallery (psycopg 3 + a connection pool), for deployments that run several replicas.

Embeddings are stored as float32 bytes and searched exactly in process, like the SQLite backend.
Each write bumps a counter in the same transaction; a search first reads the counter (one cheap
query) and reloads its cached matrix when another replica has written since. pgvector's ANN
indexes would serve galleries beyond ~10^6 faces; the extension is not part of Debian's
PostgreSQL packages available here, so this backend does not depend on it.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager

import numpy as np
import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool, PoolTimeout

from service.gallery.base import Gallery, GalleryError, Match, Subject, SubjectFace, rank_subjects, subject_not_found

SCHEMA = """
CREATE TABLE IF NOT EXISTS subjects (
    id TEXT PRIMARY KEY,
    name TEXT,
    metadata JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS faces (
    id TEXT PRIMARY KEY,
    subject_id TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    model_sha256 TEXT NOT NULL,
    embedding BYTEA NOT NULL,
    image BYTEA,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS faces_by_subject ON faces(subject_id);
CREATE INDEX IF NOT EXISTS faces_by_model ON faces(model_sha256);
CREATE TABLE IF NOT EXISTS gallery_version (id INT PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL);
INSERT INTO gallery_version VALUES (1, 0) ON CONFLICT DO NOTHING;
"""
SCHEMA_LOCK = 0x57_52_41  # advisory lock: replicas starting together create the schema once


def iso(timestamp) -> str:
    return timestamp.isoformat(timespec="milliseconds")


class PostgresGallery(Gallery):
    def __init__(self, dsn: str, max_connections: int = 8, timeout: float = 10):
        self._pool = ConnectionPool(dsn, min_size=1, max_size=max_connections, open=True, timeout=timeout)
        self.kind = "postgresql"
        try:
            with self._connection() as db:
                db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                db.execute(SCHEMA)
        except GalleryError:
            self._pool.close()  # its workers would retry forever
            raise
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, np.ndarray, list[tuple[str, str, str | None]]]] = {}

    @contextmanager
    def _connection(self, timeout: float | None = None):
        """A pooled connection in a transaction (commit on success, rollback on an exception);
        an unreachable server becomes a 503, not a 500."""
        try:
            with self._pool.connection(timeout=timeout) as db:
                yield db
        except (psycopg.OperationalError, PoolTimeout) as error:
            raise GalleryError("database_unavailable", f"PostgreSQL is unreachable: {error}", 503) from error

    def _write(self, statements):
        """Runs statements(connection) in one transaction that also bumps the gallery version."""
        with self._connection() as db:
            result = statements(db)
            db.execute("UPDATE gallery_version SET version = version + 1 WHERE id = 1")
            return result

    def create_subject(self, subject_id: str, name: str | None, metadata: dict) -> Subject:
        def insert(db):
            try:
                row = db.execute(
                    "INSERT INTO subjects(id, name, metadata) VALUES (%s, %s, %s) RETURNING created_at",
                    (subject_id, name, json.dumps(metadata)),
                ).fetchone()
            except errors.UniqueViolation:
                raise GalleryError("subject_exists", f"subject {subject_id!r} already exists", 409) from None
            return row[0]

        return Subject(subject_id, name, metadata, iso(self._write(insert)))

    @staticmethod
    def _faces(db, subject_ids: list[str]) -> dict[str, list[SubjectFace]]:
        faces: dict[str, list[SubjectFace]] = {subject_id: [] for subject_id in subject_ids}
        rows = db.execute(
            "SELECT id, subject_id, model_sha256, created_at, image IS NOT NULL FROM faces"
            " WHERE subject_id = ANY(%s) ORDER BY created_at, id",
            (subject_ids,),
        ).fetchall()
        for r in rows:
            faces[r[1]].append(SubjectFace(r[0], r[1], r[2], iso(r[3]), r[4]))
        return faces

    def get_subject(self, subject_id: str) -> Subject:
        with self._connection() as db:
            row = db.execute("SELECT id, name, metadata, created_at FROM subjects WHERE id = %s", (subject_id,)).fetchone()
            if row is None:
                raise subject_not_found(subject_id)
            return Subject(row[0], row[1], row[2], iso(row[3]), self._faces(db, [subject_id])[subject_id])

    def list_subjects(self, limit: int, offset: int) -> tuple[list[Subject], int]:
        with self._connection() as db:
            total = db.execute("SELECT COUNT(*) FROM subjects").fetchone()[0]
            rows = db.execute(
                "SELECT id, name, metadata, created_at FROM subjects ORDER BY created_at, id LIMIT %s OFFSET %s", (limit, offset)
            ).fetchall()
            faces = self._faces(db, [r[0] for r in rows])
            return [Subject(r[0], r[1], r[2], iso(r[3]), faces[r[0]]) for r in rows], total

    def delete_subject(self, subject_id: str) -> None:
        def delete(db):
            if db.execute("DELETE FROM subjects WHERE id = %s", (subject_id,)).rowcount == 0:
                raise subject_not_found(subject_id)

        self._write(delete)

    def add_face(self, subject_id: str, face_id: str, embedding: np.ndarray, model_sha256: str, image: bytes | None) -> SubjectFace:
        blob = np.asarray(embedding, np.float32).tobytes()

        def insert(db):
            try:
                return db.execute(
                    "INSERT INTO faces(id, subject_id, model_sha256, embedding, image) VALUES (%s, %s, %s, %s, %s) RETURNING created_at",
                    (face_id, subject_id, model_sha256, blob, image),
                ).fetchone()[0]
            except errors.ForeignKeyViolation:
                raise subject_not_found(subject_id) from None

        created = self._write(insert)
        return SubjectFace(face_id, subject_id, model_sha256, iso(created), image is not None)

    def delete_face(self, subject_id: str, face_id: str) -> None:
        def delete(db):
            if db.execute("DELETE FROM faces WHERE id = %s AND subject_id = %s", (face_id, subject_id)).rowcount == 0:
                raise GalleryError("face_not_found", f"subject {subject_id!r} has no face {face_id!r}", 404)

        self._write(delete)

    def _matrix(self, model_sha256: str):
        with self._connection() as db:
            version = db.execute("SELECT version FROM gallery_version WHERE id = 1").fetchone()[0]
            with self._lock:
                cached = self._cache.get(model_sha256)
                if cached is not None and cached[0] == version:
                    return cached[1], cached[2]
            # Version read before the rows: the rows are at least that new, so a write that lands in
            # between only costs one extra reload on the next search, never a stale answer.
            rows = db.execute(
                "SELECT f.id, f.subject_id, s.name, f.embedding FROM faces f JOIN subjects s ON s.id = f.subject_id"
                " WHERE f.model_sha256 = %s",
                (model_sha256,),
            ).fetchall()
        matrix = np.stack([np.frombuffer(r[3], np.float32) for r in rows]) if rows else np.zeros((0, 0), np.float32)
        keys = [(r[0], r[1], r[2]) for r in rows]
        with self._lock:
            self._cache[model_sha256] = (version, matrix, keys)
        return matrix, keys

    def search(self, embedding: np.ndarray, model_sha256: str, top_k: int) -> list[Match]:
        matrix, keys = self._matrix(model_sha256)
        return rank_subjects(matrix, keys, embedding, top_k)

    def face_counts(self, model_sha256: str) -> tuple[int, int]:
        with self._connection() as db:
            current, total = db.execute(
                "SELECT COUNT(*) FILTER (WHERE model_sha256 = %s), COUNT(*) FROM faces", (model_sha256,)
            ).fetchone()
        return int(current), int(total - current)

    def ping(self) -> None:
        with self._connection(timeout=2) as db:
            db.execute("SELECT 1")

    def close(self) -> None:
        self._pool.close()
