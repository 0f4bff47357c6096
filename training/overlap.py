"""Which LFW people are also in the training data? Teacher-embedding centroids, matched at a strict threshold.

    python -m training.overlap --train ../shared/data/celeba299/aligned112 ../shared/data/celeba10k/aligned112 \
        --lfw ../shared/data/lfw --out runs/overlap --list training/data/lfw_training_overlap.txt

CelebA folders are numeric identities (no names), so names cannot be compared. Each person's
centroid is the mean of dlib's unit descriptors of their faces (dlib's own landmarks and chip,
`training.teacher`); an LFW person matches a training identity when the Euclidean distance of
the re-normalised centroids is below `--threshold`. The threshold is justified by the impostor
rate it would give among LFW people themselves (every LFW name is a different person, so any
LFW-LFW centroid match below it is a false match): the report prints both figures per threshold.
The list it writes is what `training.benchmark --lfw-exclude` leaves out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

THRESHOLDS = (0.30, 0.35, 0.40, 0.45, 0.50)
DEFAULT_THRESHOLD = 0.40


def identity_images(root: Path, per_identity: int) -> dict[str, list[Path]]:
    """root/<identity>/<image> -> the first `per_identity` images of each identity (sorted)."""
    people = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if images:
            people[folder.name] = images[:per_identity]
    return people


def lfw_pair_people(pairs_txt: Path) -> set[str]:
    names = set()
    for row in (line.split() for line in pairs_txt.read_text().splitlines()[1:] if line.strip()):
        names.update([row[0]] if len(row) == 3 else [row[0], row[2]])
    return names


def centroids(people: dict[str, list[Path]], embed, desc: str) -> tuple[list[str], np.ndarray]:
    from training.teacher import read_rgb

    names, vectors = [], []
    for name, images in tqdm(people.items(), desc=desc, unit="person"):
        mean = np.mean([embed(read_rgb(path)) for path in images], axis=0)
        names.append(name)
        vectors.append(mean / np.linalg.norm(mean))
    return names, np.stack(vectors).astype(np.float32)


def nearest(queries: np.ndarray, gallery: np.ndarray, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Index and Euclidean distance of each query's nearest gallery centroid (unit vectors)."""
    distances = np.sqrt(np.clip(2 - 2 * queries @ gallery.T, 0, None))
    if exclude_self:
        np.fill_diagonal(distances, np.inf)
    index = distances.argmin(1)
    return index, distances[np.arange(len(queries)), index]


def training_people(roots: list[Path], per_identity: int) -> dict[str, list[Path]]:
    """Identities of several <identity>/<face> folders merged by name (a file in two of them counted once)."""
    people: dict[str, list[Path]] = {}
    for root in roots:
        for name, images in identity_images(root, per_identity).items():
            merged = people.setdefault(name, [])
            seen = {p.name for p in merged}
            merged += [p for p in images if p.name not in seen][: per_identity - len(merged)]
    return people


def lfw_people(lfw: Path, per_identity: int) -> dict[str, list[Path]]:
    pair_people = lfw_pair_people(lfw / "pairs.txt")
    return {n: images for n, images in identity_images(lfw / "aligned112", per_identity).items() if n in pair_people}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.overlap", description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, nargs="+", required=True, help="<identity>/<face> folders, merged by identity name")
    parser.add_argument("--lfw", type=Path, required=True, help="LFW root with pairs.txt and aligned112/")
    parser.add_argument("--per-identity", type=int, default=4, help="faces per person in a centroid")
    parser.add_argument("--side", choices=["both", "train", "lfw"], default="both",
                        help="compute (and cache) one side's centroids only, e.g. in two parallel processes")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--out", type=Path, default=Path("runs/overlap"))
    parser.add_argument("--list", type=Path, help="write the matched LFW names here (one a line)")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    sides = {"train": lambda: training_people(args.train, args.per_identity),
             "lfw": lambda: lfw_people(args.lfw, args.per_identity)}
    centres = {}
    for side in ("train", "lfw") if args.side == "both" else (args.side,):
        cache = args.out / f"centroids_{side}.npz"  # resumable, and the two sides can run as two processes
        if not cache.exists():
            from training.teacher import DlibTeacher

            names, vectors = centroids(sides[side](), DlibTeacher().embed, f"{side} identities")
            np.savez(cache, names=np.array(names), vectors=vectors)
        stored = np.load(cache)
        centres[side] = (stored["names"].astype(str).tolist(), stored["vectors"])
    if args.side != "both":
        return
    (train_names, train_vectors), (lfw_names, lfw_vectors) = centres["train"], centres["lfw"]
    match, distance = nearest(lfw_vectors, train_vectors)
    _, impostor = nearest(lfw_vectors, lfw_vectors, exclude_self=True)
    table = []
    for threshold in sorted({*THRESHOLDS, args.threshold}):
        table.append({
            "threshold": threshold,
            "lfw_people_matched_in_training": int((distance < threshold).sum()),
            "lfw_people_with_another_lfw_person_within (false matches)": int((impostor < threshold).sum()),
        })
    matched = sorted((lfw_names[i], train_names[match[i]], float(distance[i])) for i in np.flatnonzero(distance < args.threshold))
    report = {
        "lfw_pair_people": len(lfw_names), "training_identities": len(train_names), "per_identity": args.per_identity,
        "threshold": args.threshold, "matched": len(matched), "by_threshold": table,
        "method": "dlib descriptor centroids (training.teacher), Euclidean distance of unit centroids",
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    with (args.out / "matches.tsv").open("w") as handle:
        handle.write("lfw_person\ttraining_identity\tdistance\n")
        handle.writelines(f"{a}\t{b}\t{d:.4f}\n" for a, b, d in matched)
    if args.list:
        args.list.parent.mkdir(parents=True, exist_ok=True)
        args.list.write_text("".join(f"{name}\n" for name, _, _ in matched))
    for row in table:
        print(json.dumps(row))
    print(f"{len(matched)} of {len(lfw_names)} LFW pair people match a training identity at distance < {args.threshold} "
          f"({args.out / 'matches.tsv'})")


if __name__ == "__main__":
    main()
