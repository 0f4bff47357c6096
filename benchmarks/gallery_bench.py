"""1:N identification on large galleries: SQLite exact vs PostgreSQL exact vs pgvector HNSW.

    python benchmarks/gallery_bench.py --dsn postgresql://postgres@/bench?host=/tmp --sizes 10000 100000 1000000

Synthetic 512-d faces clustered like real identities: identity centres with the spread of
impostor cosines of a face model (about 0 +- 0.08), 2-8 samples around each centre (genuine
cosine about 0.55), probes drawn fresh around gallery identities. The script prints the measured
cosines, then one Markdown row per size and method: load time (bulk insert, plus the HNSW build),
the first search after a write (exact paths reload every embedding then; in each replica),
the warm search latency (p50/p95 over the probes) and recall@1 against exact brute force.
Each size is printed as soon as it finishes, so a long run can be cut short. The PostgreSQL
database named by --dsn is emptied (gallery tables dropped) before each size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stra_face.gallery import SQLiteGallery  # noqa: E402
from stra_face.gallery.postgres import PostgresGallery, create_index  # noqa: E402

MODEL = "b" * 64


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class Identities:
    """Identity centres with correlated directions (a shared low-rank part, as face embeddings
    have), and samples around them: sample = centre + noise, the noise level varying per sample
    (pose, light, quality), so genuine cosine ~ 1 / sqrt((1 + a^2) (1 + b^2)) for noise levels a, b."""

    def __init__(
        self,
        count: int,
        dim: int,
        rng: np.random.Generator,
        shared_rank: int = 16,
        shared_scale: float = 1.0,
        noise: tuple[float, float] = (0.55, 1.15),
    ):
        basis = np.linalg.qr(rng.standard_normal((dim, shared_rank)))[0]
        self.centres = unit_rows(
            rng.standard_normal((count, dim)) / np.sqrt(dim)
            + shared_scale * rng.standard_normal((count, shared_rank)) @ basis.T / np.sqrt(shared_rank)
        )
        self.noise, self.rng = noise, rng

    def samples(self, identity: np.ndarray) -> np.ndarray:
        dim = self.centres.shape[1]
        level = self.rng.uniform(*self.noise, size=(len(identity), 1))
        return unit_rows(self.centres[identity] + level * self.rng.standard_normal((len(identity), dim)) / np.sqrt(dim))


def synthetic_gallery(faces: int, dim: int, seed: int = 0) -> tuple[Identities, np.ndarray, np.ndarray]:
    """(identities, identity of each face, unit embeddings), 2-8 faces per identity."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(2, 9, size=faces // 2)
    counts = counts[: np.searchsorted(np.cumsum(counts), faces) + 1]
    owner = np.repeat(np.arange(len(counts)), counts)[:faces]
    identities = Identities(int(owner.max()) + 1, dim, rng)
    embeddings = np.concatenate([identities.samples(owner[i : i + 100_000]) for i in range(0, faces, 100_000)])
    return identities, owner, embeddings


def cosine_statistics(
    identities: Identities, owner: np.ndarray, embeddings: np.ndarray, rng: np.random.Generator
) -> str:
    pairs = rng.integers(0, len(owner), size=(20_000, 2))
    cos = np.einsum("ij,ij->i", embeddings[pairs[:, 0]], embeddings[pairs[:, 1]])
    impostor = cos[owner[pairs[:, 0]] != owner[pairs[:, 1]]]
    first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])  # first face of each identity: the next one shares it
    genuine = np.einsum("ij,ij->i", embeddings[first], embeddings[first + 1])
    return (
        f"genuine cosine {genuine.mean():.2f} +- {genuine.std():.2f}, "
        f"impostor cosine {impostor.mean():.2f} +- {impostor.std():.2f}"
    )


def load_sqlite(path: Path, owner: np.ndarray, embeddings: np.ndarray) -> SQLiteGallery:
    gallery = SQLiteGallery(path)
    db = sqlite3_connection(gallery)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO subjects(id, name, metadata, created_at) VALUES (?, NULL, '{}', '')",
        ((f"s{i}",) for i in range(owner.max() + 1)),
    )
    db.executemany(
        "INSERT INTO faces(id, subject_id, model_sha256, embedding, created_at) VALUES (?, ?, ?, ?, '')",
        ((f"f{i}", f"s{owner[i]}", MODEL, embeddings[i].tobytes()) for i in range(len(owner))),
    )
    db.execute("COMMIT")
    return gallery


def sqlite3_connection(gallery: SQLiteGallery):
    return gallery._db  # the benchmark bulk-loads past the one-face-per-transaction API


def load_postgres(dsn: str, owner: np.ndarray, embeddings: np.ndarray, index_memory: str) -> tuple[float, float]:
    """Binary COPY into the gallery's own schema, then the HNSW index; (copy s, index s)."""
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS faces, subjects, gallery_version")
    PostgresGallery(dsn, use_pgvector=True).close()  # creates the schema and the vector column
    start = time.perf_counter()
    with psycopg.connect(dsn) as db:
        register_vector(db)
        with db.cursor().copy("COPY subjects(id) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text"])
            for i in range(owner.max() + 1):
                copy.write_row((f"s{i}",))
        with db.cursor().copy(
            "COPY faces(id, subject_id, model_sha256, embedding, vector) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "text", "text", "bytea", "vector"])
            for i in tqdm(range(len(owner)), desc="COPY", unit="face", mininterval=5, leave=False):
                copy.write_row((f"f{i}", f"s{owner[i]}", MODEL, embeddings[i].tobytes(), embeddings[i]))
    copied = time.perf_counter() - start
    start = time.perf_counter()
    with psycopg.connect(dsn) as db:
        db.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(index_memory)))
        db.execute("SET max_parallel_maintenance_workers = 1")  # 2 cores: the leader and one worker
        create_index(db, MODEL, embeddings.shape[1])
    indexed = time.perf_counter() - start
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("VACUUM ANALYZE faces")  # the row estimate the gallery reads to choose its path
    return copied, indexed


def measure(gallery, probes: np.ndarray, truth: list[str], top_k: int = 5) -> dict:
    gallery.search(probes[0], MODEL, top_k)  # warm: the exact paths load their matrix here
    latencies, hits = [], 0
    for probe, expected in zip(probes, truth):
        start = time.perf_counter()
        matches = gallery.search(probe, MODEL, top_k)
        latencies.append(time.perf_counter() - start)
        hits += bool(matches) and matches[0].subject_id == expected
    latencies.sort()
    return {
        "p50": 1000 * statistics.median(latencies),
        "p95": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
        "recall": hits / len(truth),
    }


def first_search_after_write(gallery, probe: np.ndarray, write) -> float:
    write()
    start = time.perf_counter()
    gallery.search(probe, MODEL, 5)
    return 1000 * (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dsn",
        default=os.environ.get("STRA_GALLERY_DSN"),
        help="PostgreSQL with pgvector available (its gallery tables are dropped)",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=["sqlite", "postgresql", "pgvector"],
        default=["sqlite", "postgresql", "pgvector"],
    )
    parser.add_argument(
        "--index-memory", default="2GB", help="maintenance_work_mem for the HNSW build (the graph should fit in it)"
    )
    parser.add_argument(
        "--candidates",
        type=int,
        default=100,
        help="faces the HNSW index hands to the exact re-ranking (STRA_GALLERY_ANN_CANDIDATES)",
    )
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("--dsn (or STRA_GALLERY_DSN) is required")

    print(
        "| faces | backend | load s | index build s | 1st search after a write ms | search p50 ms | p95 ms | recall@1 |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|", flush=True)
    for size in args.sizes:
        rng = np.random.default_rng(size)
        identities, owner, embeddings = synthetic_gallery(size, args.dim, seed=size)
        probe_owner = rng.choice(owner, size=args.probes)
        probes = identities.samples(probe_owner)
        nearest = np.concatenate(
            [np.argmax(embeddings[i : i + 100_000] @ probes.T, axis=0)[None] + i for i in range(0, size, 100_000)]
        )
        best = nearest[
            np.argmax([np.einsum("ij,ij->i", embeddings[n], probes) for n in nearest], axis=0), np.arange(len(probes))
        ]
        truth = [f"s{owner[i]}" for i in best]  # exact brute force, in numpy, one pass over the gallery
        print(
            f"<!-- {size} faces, {owner.max() + 1} identities: "
            f"{cosine_statistics(identities, owner, embeddings, rng)} -->",
            flush=True,
        )

        def row(backend: str, load: float, index: float | None, after_write: float, result: dict, size=size) -> None:
            index_text = "" if index is None else f"{index:.1f}"
            print(
                f"| {size:,} | {backend} | {load:.1f} | {index_text} | {after_write:.1f} | {result['p50']:.2f} | "
                f"{result['p95']:.2f} | {result['recall']:.3f} |",
                flush=True,
            )

        if "sqlite" in args.backends:
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                gallery = load_sqlite(Path(folder) / "gallery.sqlite3", owner, embeddings)
                load = time.perf_counter() - start
                result = measure(gallery, probes, truth)
                write = lambda g=gallery: g.create_subject(uuid.uuid4().hex, None, {})  # noqa: E731
                row("SQLite exact", load, None, first_search_after_write(gallery, probes[0], write), result)
                gallery.close()
                del gallery, write  # its cached matrix: memory the next backends need

        if {"postgresql", "pgvector"} & set(args.backends):
            copied, indexed = load_postgres(args.dsn, owner, embeddings, args.index_memory)
        for backend, name, options in (
            ("postgresql", "PostgreSQL exact", {"use_pgvector": False}),
            (
                "pgvector",
                "pgvector HNSW + exact re-rank",
                {"use_pgvector": True, "ann_min_faces": 0, "ann_candidates": args.candidates},
            ),
        ):
            if backend not in args.backends:
                continue
            gallery = PostgresGallery(args.dsn, **options)
            result = measure(gallery, probes, truth)
            write = lambda g=gallery: g.create_subject(uuid.uuid4().hex, None, {})  # noqa: E731
            row(
                name,
                copied,
                indexed if backend == "pgvector" else None,
                first_search_after_write(gallery, probes[0], write),
                result,
            )
            gallery.close()
            del gallery, write
        del identities, owner, embeddings


if __name__ == "__main__":
    main()
