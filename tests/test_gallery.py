"""The same gallery tests against SQLite and a real PostgreSQL server (skipped, with the reason,
where neither STRA_TEST_POSTGRES_DSN nor Debian's PostgreSQL binaries are available)."""
from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest

from service.gallery import GalleryError, SQLiteGallery, open_gallery

MODEL = "a" * 64


@pytest.fixture(params=["sqlite", "postgresql"])
def make_gallery(request, tmp_path):
    """make_gallery() -> a gallery; several calls share one database (like several workers)."""
    opened = []
    if request.param == "sqlite":
        path = tmp_path / "gallery.sqlite3"

        def factory():
            opened.append(SQLiteGallery(path))
            return opened[-1]
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as db:  # each test starts empty
            db.execute("DROP TABLE IF EXISTS faces, subjects, gallery_version")

        def factory():
            opened.append(open_gallery(tmp_path / "unused.sqlite3", dsn))
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
                gallery.add_face(subjects[(worker + k) % len(subjects)], f"w{worker}-{k}", unit(rng.standard_normal(16)), MODEL, None)
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
    from service.gallery.postgres import PostgresGallery

    dsn = f"postgresql://nobody@/none?host=/nonexistent-{uuid.uuid4().hex}&port=1&connect_timeout=1"
    with pytest.raises(GalleryError) as error:
        PostgresGallery(dsn, timeout=2)
    assert error.value.status == 503 and error.value.code == "database_unavailable"


def test_ranking_matches_a_full_sort_when_one_subject_fills_the_top():
    from service.gallery.base import rank_subjects

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
