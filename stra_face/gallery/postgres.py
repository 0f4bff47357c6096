"""PostgreSQL gallery (psycopg 3 + a connection pool), for deployments that run several replicas.

Embeddings are stored as float32 bytes and searched exactly in process, like the SQLite backend.
Each write bumps a counter in the same transaction; a search first reads the counter (one cheap
query) and reloads its cached matrix when another replica has written since.

With the pgvector extension (created when the server has it and the role may), every face also
gets a `vector` column, and each model a partial HNSW (cosine) index on it. Once the gallery
holds `ann_min_faces` faces (the planner's row estimate), a search asks that index for the best
`ann_candidates` faces and re-ranks them exactly in process, instead of keeping every embedding in
each replica's memory. Without the extension the exact path is all there is.
"""

from __future__ import annotations

import json
import logging
import threading
from contextlib import contextmanager

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import errors, sql
from psycopg_pool import ConnectionPool, PoolTimeout

from stra_face.gallery.base import Gallery, GalleryError, Match, Subject, SubjectFace, rank_subjects, subject_not_found

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
SCHEMA_LOCK = 0x57_52_41  # advisory lock: replicas starting together create the schema (and indexes) once
log = logging.getLogger("stra_face.gallery")


def iso(timestamp) -> str:
    return timestamp.isoformat(timespec="milliseconds")


def ranked_rows(rows) -> tuple[np.ndarray, list[tuple[str, str, str | None]]]:
    """(face id, subject id, name, float32 bytes) rows -> rank_subjects' matrix and keys."""
    matrix = np.stack([np.frombuffer(r[3], np.float32) for r in rows]) if rows else np.zeros((0, 0), np.float32)
    return matrix, [(r[0], r[1], r[2]) for r in rows]


def index_name(model_sha256: str, dimensions: int) -> str:
    return f"faces_hnsw_{model_sha256[:16]}_{dimensions}"


def create_index(db, model_sha256: str, dimensions: int) -> None:
    """One partial HNSW (cosine) index per model: faces of different models (and sizes) never share
    a graph, and a search names its model as a literal so that the planner picks that index."""
    name = index_name(model_sha256, dimensions)
    if db.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None:
        db.execute(
            sql.SQL(
                "CREATE INDEX {} ON faces USING hnsw ((vector::vector({})) vector_cosine_ops) WHERE model_sha256 = {}"
            ).format(sql.Identifier(name), sql.Literal(dimensions), sql.Literal(model_sha256))
        )


class PostgresGallery(Gallery):
    def __init__(
        self,
        dsn: str,
        max_connections: int = 8,
        timeout: float = 10,
        use_pgvector: bool = True,
        ann_min_faces: int = 10_000,
        ann_candidates: int = 100,
    ):
        try:
            with psycopg.connect(dsn, connect_timeout=max(1, round(timeout))) as db:
                db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                db.execute(SCHEMA)
                self.pgvector = use_pgvector and self._enable_pgvector(db)
        except psycopg.OperationalError as error:
            raise GalleryError("database_unavailable", f"PostgreSQL is unreachable: {error}", 503) from error
        self.kind = "postgresql+pgvector" if self.pgvector else "postgresql"
        self.ann_min_faces, self.ann_candidates = ann_min_faces, ann_candidates
        self._pool = ConnectionPool(
            dsn, min_size=1, max_size=max_connections, open=True, timeout=timeout, configure=self._configure
        )
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, np.ndarray, list[tuple[str, str, str | None]]]] = {}
        self._indexed: set[tuple[str, int]] = set()  # (model, dimensions) whose HNSW index exists

    @staticmethod
    def _enable_pgvector(db) -> bool:
        """Creates the extension when the server has it; adds (and fills) the faces' vector column."""
        if db.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is None:
            log.info("pgvector is not installed in this PostgreSQL: exact search only")
            return False
        try:
            with db.transaction():
                db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege as error:
            log.warning("pgvector is installed but this role cannot create it (%s): exact search only", error)
            return False
        db.execute("ALTER TABLE faces ADD COLUMN IF NOT EXISTS vector vector")
        register_vector(db)
        # Faces enrolled while pgvector was absent or turned off get their vector now.
        rows = db.execute("SELECT id, embedding FROM faces WHERE vector IS NULL").fetchall()
        with db.cursor() as cursor:
            cursor.executemany(
                "UPDATE faces SET vector = %s WHERE id = %s", [(np.frombuffer(r[1], np.float32), r[0]) for r in rows]
            )
        for model_sha256, dimensions in db.execute(
            "SELECT DISTINCT model_sha256, vector_dims(vector) FROM faces"
        ).fetchall():
            create_index(db, model_sha256, dimensions)
        return True

    def _configure(self, db) -> None:
        if self.pgvector:
            register_vector(db)
            db.commit()  # the pool wants its connections idle

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
            row = db.execute(
                "SELECT id, name, metadata, created_at FROM subjects WHERE id = %s", (subject_id,)
            ).fetchone()
            if row is None:
                raise subject_not_found(subject_id)
            return Subject(row[0], row[1], row[2], iso(row[3]), self._faces(db, [subject_id])[subject_id])

    def list_subjects(self, limit: int, offset: int) -> tuple[list[Subject], int]:
        with self._connection() as db:
            total = db.execute("SELECT COUNT(*) FROM subjects").fetchone()[0]
            rows = db.execute(
                "SELECT id, name, metadata, created_at FROM subjects ORDER BY created_at, id LIMIT %s OFFSET %s",
                (limit, offset),
            ).fetchall()
            faces = self._faces(db, [r[0] for r in rows])
            return [Subject(r[0], r[1], r[2], iso(r[3]), faces[r[0]]) for r in rows], total

    def delete_subject(self, subject_id: str) -> None:
        def delete(db):
            if db.execute("DELETE FROM subjects WHERE id = %s", (subject_id,)).rowcount == 0:
                raise subject_not_found(subject_id)

        self._write(delete)

    def add_face(
        self, subject_id: str, face_id: str, embedding: np.ndarray, model_sha256: str, image: bytes | None
    ) -> SubjectFace:
        embedding = np.asarray(embedding, np.float32)
        if self.pgvector:
            self._ensure_index(model_sha256, embedding.size)

        row = {
            "id": face_id,
            "subject_id": subject_id,
            "model_sha256": model_sha256,
            "embedding": embedding.tobytes(),
            "image": image,
        }
        if self.pgvector:
            row["vector"] = embedding
        statement = sql.SQL("INSERT INTO faces({}) VALUES ({}) RETURNING created_at").format(
            sql.SQL(", ").join(map(sql.Identifier, row)), sql.SQL(", ").join(sql.Placeholder() * len(row))
        )

        def insert(db):
            try:
                return db.execute(statement, list(row.values())).fetchone()[0]
            except errors.ForeignKeyViolation:
                raise subject_not_found(subject_id) from None

        created = self._write(insert)
        return SubjectFace(face_id, subject_id, model_sha256, iso(created), image is not None)

    def _ensure_index(self, model_sha256: str, dimensions: int) -> None:
        if (model_sha256, dimensions) not in self._indexed:
            with self._connection() as db:
                db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                create_index(db, model_sha256, dimensions)
            self._indexed.add((model_sha256, dimensions))

    def delete_face(self, subject_id: str, face_id: str) -> None:
        def delete(db):
            if db.execute("DELETE FROM faces WHERE id = %s AND subject_id = %s", (face_id, subject_id)).rowcount == 0:
                raise GalleryError("face_not_found", f"subject {subject_id!r} has no face {face_id!r}", 404)

        self._write(delete)

    def _version(self, db) -> tuple[int, float]:
        """The gallery version and the planner's estimate of how many faces it holds (no table scan)."""
        return db.execute(
            "SELECT version, (SELECT GREATEST(reltuples, 0) FROM pg_class WHERE oid = 'faces'::regclass) "
            "FROM gallery_version WHERE id = 1"
        ).fetchone()

    def _matrix(self, db, version: int, model_sha256: str):
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
        matrix, keys = ranked_rows(rows)
        with self._lock:
            self._cache[model_sha256] = (version, matrix, keys)
        return matrix, keys

    def _ann_search(self, db, embedding: np.ndarray, model_sha256: str, top_k: int) -> list[Match]:
        """The HNSW index's best faces, re-ranked exactly; asks for more while they hold fewer than
        top_k subjects (many faces of one person can fill the candidates)."""
        query = sql.SQL(
            "SELECT f.id, f.subject_id, s.name, f.embedding FROM ("
            " SELECT id, subject_id, embedding FROM faces WHERE model_sha256 = {}"
            " ORDER BY vector::vector({}) <=> %s LIMIT %s"
            ") f JOIN subjects s ON s.id = f.subject_id"
        ).format(sql.Literal(model_sha256), sql.Literal(embedding.size))
        limit = max(self.ann_candidates, 10 * top_k)
        while True:
            # An iterative scan goes on past ef_search, in relaxed order, which the re-ranking makes
            # exact. (On a small gallery the planner prefers an exact scan to the index: also right.)
            db.execute(
                sql.SQL("SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL hnsw.ef_search = {}").format(
                    sql.Literal(min(1000, limit))
                )
            )
            rows = db.execute(query, (embedding, limit)).fetchall()
            matches = rank_subjects(*ranked_rows(rows), embedding, top_k)
            if len(matches) == top_k or len(rows) < limit:
                return matches
            limit *= 4

    def search(self, embedding: np.ndarray, model_sha256: str, top_k: int) -> list[Match]:
        embedding = np.asarray(embedding, np.float32)
        with self._connection() as db:
            version, faces = self._version(db)
            if self.pgvector and faces >= self.ann_min_faces:
                return self._ann_search(db, embedding, model_sha256, top_k)
            matrix, keys = self._matrix(db, version, model_sha256)
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
