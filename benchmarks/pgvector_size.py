"""What a gallery costs PostgreSQL: table and index sizes per face, with pgvector's HNSW index.

    python benchmarks/pgvector_size.py --dsn postgresql://postgres@/bench?host=/tmp --sizes 10000 100000

Loads synthetic unit embeddings (gallery_bench's clustered identities, 128-d like the shipped dlib
ResNet by default) into the gallery's own schema (faces keep the float32 embedding as bytea and,
with pgvector, as a vector column), builds the HNSW index the gallery builds, and prints one
Markdown row per size: the faces table (heap + TOAST), its B-tree indexes, the HNSW index, and
bytes per face of each. The database named by --dsn is emptied (gallery tables dropped) first.
Sizes are on disk; the HNSW index is what should stay in shared_buffers / the page cache for
searches to stay fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gallery_bench import MODEL, load_postgres, synthetic_gallery  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stra_face.gallery.postgres import index_name  # noqa: E402


def sizes(dsn: str, dim: int) -> dict[str, int]:
    hnsw = index_name(MODEL, dim)
    with psycopg.connect(dsn) as db:
        table = db.execute("SELECT pg_table_size('faces')").fetchone()[
            0
        ]  # heap + TOAST + free space and visibility maps
        indexes = dict(
            db.execute(
                "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes WHERE relname = 'faces'"
            ).fetchall()
        )
        subjects = db.execute("SELECT pg_total_relation_size('subjects')").fetchone()[0]
    return {
        "table": table,
        "btree": sum(size for name, size in indexes.items() if name != hnsw),
        "hnsw": indexes[hnsw],
        "subjects": subjects,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="a database the benchmark may empty (needs pgvector)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=128, help="embedding size (128: the shipped dlib ResNet)")
    parser.add_argument("--index-memory", default="512MB", help="maintenance_work_mem for the HNSW build")
    args = parser.parse_args(argv)

    print(f"{args.dim}-d embeddings; sizes in MiB, then bytes per face")
    columns = (
        "faces, HNSW build s, faces table, B-tree indexes, HNSW index, total, table B/face, HNSW B/face, total B/face"
    )
    print("| " + " | ".join(columns.split(", ")) + " |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for count in args.sizes:
        _, owner, embeddings = synthetic_gallery(count, args.dim)
        _, indexed = load_postgres(args.dsn, owner, embeddings, args.index_memory)
        size = sizes(args.dsn, args.dim)
        total = size["table"] + size["btree"] + size["hnsw"] + size["subjects"]
        mib = lambda value: f"{value / 2**20:.1f}"  # noqa: E731
        row = [f"{count:,}", f"{indexed:.1f}", *map(mib, (size["table"], size["btree"], size["hnsw"], total))]
        row += [f"{value / count:.0f}" for value in (size["table"], size["hnsw"], total)]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
