"""The same gallery tests against SQLite, a real PostgreSQL server (exact search) and the same
server with pgvector, every search through its HNSW index (skipped, with the reason, where neither
STRA_TEST_POSTGRES_DSN nor Debian's PostgreSQL binaries are available, or pgvector cannot be built)."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest

from stra_face.gallery import GalleryError, SQLiteGallery, open_gallery

MODEL = "a" * 64


def empty_postgres(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as db:  # each test starts empty
        db.execute("DROP TABLE IF EXISTS faces, subjects, gallery_version")


@pytest.fixture(params=["sqlite", "postgresql", "pgvector"])
def make_gallery(request, tmp_path):
    """make_gallery() -> a gallery; several calls share one database (like several workers).
    pgvector: every search goes through the HNSW index (ann_min_faces=0)."""
    opened = []
    if request.param == "sqlite":
        path = tmp_path / "gallery.sqlite3"

        def factory():
            opened.append(SQLiteGallery(path))
            return opened[-1]
    else:
        pgvector = request.param == "pgvector"
        dsn = request.getfixturevalue("pgvector_dsn" if pgvector else "postgres_dsn")
        empty_postgres(dsn)

        def factory():
            opened.append(open_gallery(tmp_path / "unused.sqlite3", dsn, use_pgvector=pgvector, ann_min_faces=0))
            assert opened[-1].kind == ("postgresql+pgvector" if pgvector else "postgresql")
            return opened[-1]

    yield factory
    for gallery in opened:
        gallery.close()


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, np.float32)
    return vector / np.linalg.norm(vector)


def test_subjects_faces_and_search(make_gallery):
    gallery = make_gallery()
    alice = gallery.create_subject("alice", "Alice", {"team": "a"})
    assert alice.metadata == {"team": "a"}
    gallery.create_subject("bob", None, {})
    with pytest.raises(GalleryError) as duplicate:
        gallery.create_subject("alice", "again", {})
    assert duplicate.value.status == 409

    gallery.add_face("alice", "a1", unit([1, 0, 0]), MODEL, None)
    gallery.add_face("alice", "a2", unit([0.9, 0.1, 0]), MODEL, b"jpeg")
    gallery.add_face("bob", "b1", unit([0, 1, 0]), MODEL, None)
    gallery.add_face("bob", "other-model", unit([1, 0, 0]), "b" * 64, None)
    with pytest.raises(GalleryError) as missing:
        gallery.add_face("carol", "c1", unit([0, 0, 1]), MODEL, None)
    assert missing.value.code == "subject_not_found"

    fetched = gallery.get_subject("alice")
    assert [f.id for f in fetched.faces] == ["a1", "a2"] and fetched.faces[1].has_image
    subjects, total = gallery.list_subjects(limit=1, offset=1)
    assert total == 2 and [s.id for s in subjects] == ["bob"]

    matches = gallery.search(unit([1, 0.05, 0]), MODEL, top_k=5)
    # one row per subject (its best face), best first; another model's faces never take part
    assert [(m.subject_id, m.face_id) for m in matches] == [("alice", "a1"), ("bob", "b1")]
    assert matches[0].name == "Alice" and matches[0].similarity == pytest.approx(float(unit([1, 0.05, 0])[0]), abs=1e-5)
    assert len(gallery.search(unit([1, 0, 0]), MODEL, top_k=1)) == 1
    # after a switch to model "b...", only bob's other-model face is searched; the rest need re-enrolment
    assert gallery.face_counts(MODEL) == (3, 1) and gallery.face_counts("b" * 64) == (1, 3)
    assert [m.face_id for m in gallery.search(unit([1, 0, 0]), "b" * 64, top_k=5)] == ["other-model"]

    gallery.delete_face("alice", "a1")
    assert gallery.search(unit([1, 0, 0]), MODEL, top_k=1)[0].face_id == "a2"
    with pytest.raises(GalleryError):
        gallery.delete_face("bob", "a2")  # a face of another subject
    gallery.delete_subject("alice")
    with pytest.raises(GalleryError):
        gallery.get_subject("alice")
    assert [m.subject_id for m in gallery.search(unit([1, 0, 0]), MODEL, top_k=5)] == ["bob"]
    gallery.ping()


def test_concurrent_enrollments_lose_nothing(make_gallery):
    gallery = make_gallery()
    subjects = [f"s{i}" for i in range(8)]
    for subject in subjects:
        gallery.create_subject(subject, None, {})
    errors = []

    def enroll(worker: int):
        rng = np.random.default_rng(worker)
        try:
            for k in range(25):
                gallery.add_face(
                    subjects[(worker + k) % len(subjects)], f"w{worker}-{k}", unit(rng.standard_normal(16)), MODEL, None
                )
                gallery.search(unit(rng.standard_normal(16)), MODEL, top_k=3)  # reads interleaved with writes
        except Exception as error:  # collected: an exception in a thread would otherwise vanish
            errors.append(error)

    threads = [threading.Thread(target=enroll, args=(w,)) for w in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(len(gallery.get_subject(s).faces) for s in subjects) == 16 * 25
    assert len(gallery.search(unit(np.ones(16)), MODEL, top_k=100)) == len(subjects)


def test_a_write_through_one_instance_is_seen_by_another(make_gallery):
    """Two workers (processes or replicas) on one database: a cached search matrix must not go stale."""
    writer, reader = make_gallery(), make_gallery()
    writer.create_subject("x", None, {})
    writer.add_face("x", "x1", unit([1, 0]), MODEL, None)
    assert [m.face_id for m in reader.search(unit([1, 0]), MODEL, 5)] == ["x1"]  # reader caches its matrix
    writer.create_subject("y", None, {})
    writer.add_face("y", "y1", unit([0, 1]), MODEL, None)
    assert reader.search(unit([0, 1]), MODEL, 5)[0].face_id == "y1"
    writer.delete_subject("y")
    assert [m.subject_id for m in reader.search(unit([0, 1]), MODEL, 5)] == ["x"]


def test_unreachable_postgres_is_a_503_not_a_crash():
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    from stra_face.gallery.postgres import PostgresGallery

    dsn = f"postgresql://nobody@/none?host=/nonexistent-{uuid.uuid4().hex}&port=1&connect_timeout=1"
    with pytest.raises(GalleryError) as error:
        PostgresGallery(dsn, timeout=2)
    assert error.value.status == 503 and error.value.code == "database_unavailable"


def test_ranking_matches_a_full_sort_when_one_subject_fills_the_top():
    from stra_face.gallery.base import rank_subjects

    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((3000, 32)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    query = matrix[0]
    order = np.argsort(-(matrix @ query))
    # the 200 best faces all belong to one subject: ranking must look past them
    keys = [None] * len(order)
    for rank, index in enumerate(order):
        keys[index] = (f"f{index}", "crowd" if rank < 200 else f"s{index}", None)
    matches = rank_subjects(matrix, keys, query, top_k=5)
    expected = [order[0]] + [index for index in order[200:204]]
    assert [m.face_id for m in matches] == [f"f{i}" for i in expected]
    assert [m.subject_id for m in matches][0] == "crowd"


@pytest.fixture
def hnsw_dsn(pgvector_dsn):
    """A fresh database whose planner avoids scanning every row and sorting when it can: on galleries
    this small it would rightly do both instead of asking the HNSW index, and these tests are about it."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(pgvector_dsn, autocommit=True) as db:
        db.execute("DROP DATABASE IF EXISTS stra_hnsw")
        db.execute("CREATE DATABASE stra_hnsw")
        db.execute("ALTER DATABASE stra_hnsw SET enable_seqscan = off")
        db.execute("ALTER DATABASE stra_hnsw SET enable_sort = off")
    return make_conninfo(pgvector_dsn, dbname="stra_hnsw")


def hnsw_scans(dsn: str, expected: int) -> int:
    """Index scans of the HNSW indexes so far, once `expected` are counted or after 10 s (a backend
    reports its statistics as it exits, so the gallery that searched is closed first)."""
    import psycopg

    deadline = time.monotonic() + 10
    with psycopg.connect(dsn, autocommit=True) as db:
        while True:
            db.execute("SELECT pg_stat_clear_snapshot()")
            scans = db.execute(
                "SELECT COALESCE(SUM(idx_scan), 0) FROM pg_stat_user_indexes WHERE indexrelname LIKE 'faces_hnsw_%'"
            ).fetchone()[0]
            if scans >= expected or time.monotonic() > deadline:
                return scans
            time.sleep(0.1)


def clustered(identities: int, per_identity: int, dim: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Faces like a face model's: identity centres, samples around them (genuine cosine ~0.6)."""
    centres = rng.standard_normal((identities, dim))
    owner = np.repeat(np.arange(identities), per_identity)
    faces = centres[owner] + 0.8 * rng.standard_normal((len(owner), dim))
    return owner, (faces / np.linalg.norm(faces, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.slow
def test_hnsw_search_finds_what_exact_search_finds(hnsw_dsn):
    from stra_face.gallery.postgres import PostgresGallery

    rng = np.random.default_rng(0)
    owner, faces = clustered(200, 4, 64, rng)
    gallery = PostgresGallery(hnsw_dsn, ann_min_faces=0, ann_candidates=20)
    for subject in range(200):
        gallery.create_subject(f"s{subject}", None, {})
    for index, (subject, face) in enumerate(zip(owner, faces)):
        gallery.add_face(f"s{subject}", f"f{index}", face, MODEL, None)
    probes_owner, probes = clustered(200, 1, 64, np.random.default_rng(0))  # same centres, fresh samples
    probes = unit(probes + 0.3 * rng.standard_normal(probes.shape))
    agree = 0
    for probe in probes:
        similarity = faces @ probe
        exact = [f"s{owner[i]}" for i in np.argsort(-similarity)]
        exact_top = list(dict.fromkeys(exact))[:5]
        found = gallery.search(probe, MODEL, top_k=5)
        agree += [m.subject_id for m in found] == exact_top
        if found[0].subject_id == exact_top[0]:  # re-ranked exactly: the same similarity as brute force
            assert found[0].similarity == pytest.approx(float(similarity.max()), abs=1e-5)
    gallery.close()
    assert agree >= 0.95 * len(probes)
    assert hnsw_scans(hnsw_dsn, len(probes)) == len(probes)


def test_hnsw_search_looks_past_one_subject_that_fills_the_candidates(hnsw_dsn):
    from stra_face.gallery.postgres import PostgresGallery

    rng = np.random.default_rng(1)
    query = unit(rng.standard_normal(32))
    gallery = PostgresGallery(hnsw_dsn, ann_min_faces=0, ann_candidates=20)
    gallery.create_subject("crowd", None, {})
    for k in range(60):  # 60 faces closer to the query than anyone else's: three times the candidates
        gallery.add_face("crowd", f"c{k}", unit(query + 0.3 * unit(rng.standard_normal(32))), MODEL, None)
    others = {}
    for k in range(40):
        gallery.create_subject(f"s{k}", None, {})
        others[f"s{k}"] = unit(query + 1.5 * unit(rng.standard_normal(32)))
        gallery.add_face(f"s{k}", f"o{k}", others[f"s{k}"], MODEL, None)
    found = gallery.search(query, MODEL, top_k=4)
    gallery.close()
    expected = sorted(others, key=lambda s: -float(others[s] @ query))[:3]
    assert [m.subject_id for m in found] == ["crowd", *expected]
    assert hnsw_scans(hnsw_dsn, 2) == 2  # the widened second query went through the index too


def test_faces_enrolled_without_pgvector_are_indexed_when_it_arrives(hnsw_dsn):
    from stra_face.gallery.postgres import PostgresGallery

    before = PostgresGallery(hnsw_dsn, use_pgvector=False)
    assert before.kind == "postgresql"
    before.create_subject("x", "X", {})
    before.add_face("x", "x16", unit(np.arange(16) + 1.0), MODEL, None)
    before.add_face("x", "x8", unit(np.arange(8) + 1.0), "b" * 64, None)  # another model, another size
    before.close()
    after = PostgresGallery(hnsw_dsn, ann_min_faces=0)
    assert after.kind == "postgresql+pgvector"
    assert [m.face_id for m in after.search(unit(np.arange(16) + 1.0), MODEL, 5)] == ["x16"]
    assert [m.face_id for m in after.search(unit(np.arange(8) + 1.0), "b" * 64, 5)] == ["x8"]
    after.close()
    assert hnsw_scans(hnsw_dsn, 2) == 2
