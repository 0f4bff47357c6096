"""Which LFW people are also in the training data? Teacher-embedding centroids, matched at a strict threshold.

    python -m stra_face.training.face.overlap --train ../shared/data/celeba299/aligned112 \
        ../shared/data/celeba10k/aligned112 --lfw ../shared/data/lfw --train-per-identity 1 --out runs/overlap \
        --list stra_face/training/data/lfw_training_overlap.txt

CelebA folders are numeric identities (no names), so names cannot be compared. Each person's
centroid is the mean of the teacher's unit descriptors of their faces (dlib's ResNet in PyTorch,
`stra_face.models.dlib_resnet`, on the chip cut from each aligned crop exactly as training cuts it,
`stra_face.training.face.data.teacher_chip_matrix`); an LFW person matches a training identity when the
Euclidean distance of the centred, re-normalised centroids is below `--threshold`. The threshold
is justified by the impostor rate it gives among LFW people themselves (every LFW name is a
different person, so any LFW-LFW match below it is a false match) and by a positive control
(identities present in two training sources, found from the second source's faces): the report
prints all three per threshold.
The list it writes is what `stra_face.training.eval.verification --lfw-exclude` leaves out. With
`--train-cache` the training side is every face of the offline route's teacher cache, UTKFace's
unnamed faces included (each its own identity, so more chances of a false match: the report's
LFW-LFW column shows the rate):

    python -m stra_face.training.face.overlap --train-cache runs/face/teacher_cache.npz \
        --train ../shared/data/celeba299/aligned112 ../shared/data/celeba10k/aligned112 --lfw ../shared/data/lfw \
        --train-per-identity 1 --out runs/overlap_utk --list stra_face/training/data/lfw_training_overlap.txt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

THRESHOLDS = (0.45, 0.50, 0.55, 0.60, 0.65, 0.70)
DEFAULT_THRESHOLD = 0.55


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


def centroids(people: dict[str, list[Path]], teacher, desc: str, batch_size: int = 64) -> tuple[list[str], np.ndarray]:
    """Unit mean descriptor per person (faces as aligned, no mirror)."""
    import cv2
    import torch

    from stra_face.training.face.data import TEACHER_CHIP, render, teacher_chip_matrix

    chip = np.vstack([teacher_chip_matrix(), [0, 0, 1]])
    owners = [name for name, images in people.items() for _ in images]
    files = [path for images in people.values() for path in images]
    vectors = []
    for start in tqdm(range(0, len(files), batch_size), desc=desc, unit="batch"):
        chips = [
            render(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), chip, TEACHER_CHIP)
            for path in files[start : start + batch_size]
        ]
        with torch.inference_mode():
            batch = teacher(torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()).numpy()
        vectors.append(batch / np.linalg.norm(batch, axis=1, keepdims=True))
    vectors = np.concatenate(vectors)
    names = list(people)
    row_of = {name: row for row, name in enumerate(names)}
    sums = np.zeros((len(names), vectors.shape[1]), np.float64)
    np.add.at(sums, [row_of[name] for name in owners], vectors)
    return names, (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def positive_control(
    args, train_names: list[str], train_vectors: np.ndarray, mean: np.ndarray, train_per_identity: int
):
    """(distance to the nearest training vector, whether it is the right identity) for people known to
    be in the training data: identities present in two sources, searched with a centroid of faces of the
    second source only (like an LFW person's), against the training vectors (the first source's face)."""
    if not args.train or len(args.train) < 2:
        return None
    cache = args.out / "centroids_control.npz"
    if not cache.exists():
        from stra_face.models.dlib_resnet import load_dlib_resnet

        first = identity_images(args.train[0], train_per_identity)
        people = {
            name: [p for p in images if p.name not in {q.name for q in first[name]}]
            for name, images in identity_images(args.train[1], args.per_identity).items()
            if name in first
        }
        names, vectors = centroids({n: i for n, i in people.items() if i}, load_dlib_resnet().eval(), "control faces")
        np.savez(cache, names=np.array(names), vectors=vectors)
    stored = np.load(cache)
    names, vectors = stored["names"].astype(str).tolist(), unit(stored["vectors"] - mean)
    index, distance = nearest(vectors, train_vectors)
    return distance, np.array([train_names[i] == name for i, name in zip(index, names)])


def cached_centroids(path: Path, per_identity: int) -> tuple[list[str], np.ndarray]:
    """Training centroids from a teacher cache: the unit mean of the first `per_identity` faces of each
    identity (view 0: the face as aligned, the same chip as `centroids` cuts; the cache's teacher is the
    ONNX export of the same network). A pack without identities (UTKFace) counts each face as one."""
    cache = np.load(path)
    descriptors = cache["descriptors"][:, 0].astype(np.float64)
    names, inverse = np.unique(cache["identity"].astype(str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(names)))
    rank = np.empty(len(inverse), np.int64)
    rank[order] = np.arange(len(order)) - starts[inverse[order]]
    keep = rank < per_identity
    sums = np.zeros((len(names), descriptors.shape[1]))
    np.add.at(sums, inverse[keep], unit(descriptors[keep]))
    return names.tolist(), unit(sums).astype(np.float32)


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
    parser = argparse.ArgumentParser(
        prog="python -m stra_face.training.face.overlap", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--train", type=Path, nargs="+", help="<identity>/<face> folders, merged by identity name")
    parser.add_argument(
        "--train-cache",
        type=Path,
        help="the offline route's teacher cache (python -m stra_face.training.face.offline cache): its training "
        "faces, packs included, as the training side, each face's view 0 descriptor taken as computed there",
    )
    parser.add_argument("--lfw", type=Path, required=True, help="LFW root with pairs.txt and aligned112/")
    parser.add_argument("--per-identity", type=int, default=4, help="faces per person in a centroid")
    parser.add_argument(
        "--train-per-identity",
        type=int,
        default=0,
        help="faces per training identity, if other than --per-identity (most have one or two)",
    )
    parser.add_argument(
        "--side",
        choices=["both", "train", "lfw"],
        default="both",
        help="compute (and cache) one side's centroids only, e.g. in two parallel processes",
    )
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--out", type=Path, default=Path("runs/overlap"))
    parser.add_argument("--list", type=Path, help="write the matched LFW names here (one a line)")
    args = parser.parse_args(argv)
    if not args.train and not args.train_cache:
        parser.error("give --train folders, --train-cache, or both (the folders then serve the positive control)")

    args.out.mkdir(parents=True, exist_ok=True)
    train_per_identity = args.train_per_identity or args.per_identity
    sides = {
        "train": lambda: training_people(args.train, train_per_identity),
        "lfw": lambda: lfw_people(args.lfw, args.per_identity),
    }
    centres = {}
    if args.train_cache:
        centres["train"] = cached_centroids(args.train_cache, train_per_identity)
    for side in ("train", "lfw") if args.side == "both" else (args.side,):
        if side in centres:
            continue
        cache = args.out / f"centroids_{side}.npz"  # resumable, and the two sides can run as two processes
        if not cache.exists():
            from stra_face.models.dlib_resnet import load_dlib_resnet

            names, vectors = centroids(sides[side](), load_dlib_resnet().eval(), f"{side} faces")
            np.savez(cache, names=np.array(names), vectors=vectors)
        stored = np.load(cache)
        centres[side] = (stored["names"].astype(str).tolist(), stored["vectors"])
    if args.side != "both":
        return
    (train_names, train_vectors), (lfw_names, lfw_vectors) = centres["train"], centres["lfw"]
    # dlib's descriptors share one direction (different people ~0.83 cosine); centred on the mean of
    # all of them, as training centres the teacher's targets, distances spread out
    mean = np.concatenate([train_vectors, lfw_vectors]).mean(0)
    train_vectors, lfw_vectors = unit(train_vectors - mean), unit(lfw_vectors - mean)
    match, distance = nearest(lfw_vectors, train_vectors)
    _, impostor = nearest(lfw_vectors, lfw_vectors, exclude_self=True)
    control = positive_control(args, train_names, train_vectors, mean, train_per_identity)
    table = []
    for threshold in sorted({*THRESHOLDS, args.threshold}):
        table.append(
            {
                "threshold": threshold,
                "lfw_people_matched_in_training": int((distance < threshold).sum()),
                "lfw_people_with_another_lfw_person_within (false matches)": int((impostor < threshold).sum()),
                "known_same_person_found (of the control)": int(((control[0] < threshold) & control[1]).sum())
                if control
                else None,
            }
        )
    matched = sorted(
        (lfw_names[i], train_names[match[i]], float(distance[i])) for i in np.flatnonzero(distance < args.threshold)
    )
    report = {
        "lfw_pair_people": len(lfw_names),
        "training_identities": len(train_names),
        "per_identity": {"lfw": args.per_identity, "train": train_per_identity},
        "threshold": args.threshold,
        "matched": len(matched),
        "by_threshold": table,
        "control": "identities in two --train sources: centroid of the second source's faces searched among all "
        "training vectors (the identity's own is from the first source): "
        "found = nearest is the right one and below the threshold",
        "control_identities": 0 if not control else len(control[0]),
        "method": "dlib_resnet_v1 descriptors (chip cut as training cuts it), per-person unit means, centred on the "
        "mean of all, Euclidean distance of unit vectors",
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
    print(
        f"{len(matched)} of {len(lfw_names)} LFW pair people match a training identity at distance < {args.threshold} "
        f"({args.out / 'matches.tsv'})"
    )


if __name__ == "__main__":
    main()
