"""Offline face-verification benchmark, InsightFace's protocol to the letter, and threshold calibration.

    python -m stra_face.training.eval --onnx stra_face/assets/models/dlib_resnet_v1.onnx --cfp ../shared/data/cfp \
        --out runs/bench/shipped --calibrate cfp_fp --thresholds-file stra_face/assets/models/thresholds.json
    python -m stra_face.training.eval --checkpoint runs/face/stra/best.pt --bin lfw.bin cfp_fp.bin agedb_30.bin
    python -m stra_face.training.eval --teacher dlib --cfp ../shared/data/cfp          # the distillation teacher
    python -m stra_face.training.eval --onnx m.onnx --lfw-pairs pairs.txt --lfw-root lfw/   # LFW image folder
    python -m stra_face.training.eval --onnx m.onnx --lfw-pairs lfw/pairs.txt --lfw-root lfw/aligned112.npz \
        --lfw-exclude stra_face/training/data/lfw_training_overlap.txt   # a face pack; LFW also without people
                                                                         # seen in training

Protocol (InsightFace `verification.py`): inputs in [-1, 1]; embedding = f(image) + f(mirror),
L2-normalised; distance = squared L2; thresholds 0..4 step 0.01; 10 folds in order (no
shuffling): the threshold is chosen on 9 folds and accuracy measured on the 10th; mean ± std.
TAR@FAR is measured over all pairs where there are enough impostor pairs (>= 1/FAR).
Image folders can also be face packs (`python -m stra_face.training.face.data pack`, 112x112), which is how
the benchmark sets travel to a GPU machine.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from stra_face.training.eval.embedders import (
    Embedder,
    FacePreparer,
    embed_images,
    load_checkpoint_model,
    onnx_embedder,
    teacher_embedder,
    torch_embedder,
)
from stra_face.training.face.data import FacePack, PackedImage
from stra_face.vision.cards import sha256_file
from stra_face.vision.preprocess import FACE_SIZE

# the calibration math is torch-free: `stra-face calibrate` runs it on the base install
from stra_face.vision.thresholds import calibration_entry, roc_curve, threshold_at_far, write_thresholds

FARS = (1e-2, 1e-3, 1e-4)
THRESHOLDS = np.arange(0, 4, 0.01)


@dataclass
class PairSet:
    """Verification pairs over a list of images; `folds[p]` is pair p's fold (0..9)."""

    name: str
    images: list  # paths (str/Path) or encoded bytes
    pairs: np.ndarray  # (P, 2) indices into images
    issame: np.ndarray  # (P,) bool
    folds: np.ndarray  # (P,) int


# --------------------------------------------------------------------------- readers


def image_locator(root: str | Path) -> Callable[[str], Path | PackedImage]:
    """relative path -> a file under root, or a face in the pack root (or `<root>.npz`), 112x112 faces."""
    root = Path(root)
    if not root.exists() and root.with_name(root.name + ".npz").exists():
        root = root.with_name(root.name + ".npz")  # the folder packed under the same name
    if root.suffix != ".npz":
        return lambda relative: root / relative
    pack = FacePack(root)
    if pack.size != FACE_SIZE:
        raise ValueError(
            f"{root}: benchmark packs hold {FACE_SIZE}x{FACE_SIZE} faces, this one {pack.size}x{pack.size}"
        )
    return lambda relative: PackedImage(pack, relative)


def person_of(image: Path | PackedImage) -> str:
    return Path(image.relative if isinstance(image, PackedImage) else image).parent.name


def without_people(pairset: PairSet, people: set[str], name: str) -> PairSet:
    """The pairs in which neither face belongs to `people` (folds kept, so still a 10-fold protocol)."""
    excluded = np.array([person_of(image) in people for image in pairset.images])
    keep = ~excluded[pairset.pairs].any(axis=1)
    return PairSet(name, pairset.images, pairset.pairs[keep], pairset.issame[keep], pairset.folds[keep])


def contiguous_folds(count: int, n_folds: int = 10) -> np.ndarray:
    """sklearn KFold(n_splits, shuffle=False) as InsightFace uses it: the first count % n folds get one extra."""
    return np.concatenate(
        [np.full(len(chunk), fold) for fold, chunk in enumerate(np.array_split(np.arange(count), n_folds))]
    )


def read_bin(path: str | Path) -> PairSet:
    """InsightFace `.bin`: pickle of (list of encoded images, list of is-same flags); pair i = images 2i, 2i+1."""
    with open(path, "rb") as handle:
        bins, issame = pickle.load(handle, encoding="bytes")
    issame = np.asarray(issame, bool)
    if len(bins) != 2 * len(issame):
        raise ValueError(f"{path}: {len(bins)} images for {len(issame)} pairs (expected twice as many)")
    pairs = np.arange(len(bins)).reshape(-1, 2)
    return PairSet(Path(path).stem, [bytes(b) for b in bins], pairs, issame, contiguous_folds(len(issame)))


def read_lfw_pairs(pairs_txt: str | Path, images_root: str | Path, extension: str = "jpg") -> PairSet:
    """LFW View 2: header "10 300", then per fold 300 `name i j` then 300 `name1 i name2 j` lines."""
    lines = Path(pairs_txt).read_text().split("\n")
    n_folds, per_fold = (int(v) for v in lines[0].split())
    locate = image_locator(images_root)
    index: dict[object, int] = {}
    images, pairs, issame, folds = [], [], [], []

    def image_id(name: str, number: str) -> int:
        path = locate(f"{name}/{name}_{int(number):04d}.{extension}")
        if path not in index:
            index[path] = len(images)
            images.append(path)
        return index[path]

    rows = [line.split() for line in lines[1:] if line.strip()]
    if len(rows) != n_folds * per_fold * 2:
        raise ValueError(f"{pairs_txt}: {len(rows)} pairs, header promises {n_folds} x 2 x {per_fold}")
    for number, row in enumerate(rows):
        if len(row) == 3:
            pairs.append((image_id(row[0], row[1]), image_id(row[0], row[2])))
            issame.append(True)
        elif len(row) == 4:
            pairs.append((image_id(row[0], row[1]), image_id(row[2], row[3])))
            issame.append(False)
        else:
            raise ValueError(f"{pairs_txt}:{number + 2}: expected 3 or 4 fields")
        folds.append(number // (2 * per_fold))
    return PairSet("lfw", images, np.asarray(pairs), np.asarray(issame), np.asarray(folds))


def read_cfp(cfp_root: str | Path, protocol: str, images_dir: str = "aligned112") -> PairSet:
    """CFP's official release: Protocol/Pair_list_{F,P}.txt and Protocol/Split/{FF,FP}/01..10/{same,diff}.txt."""
    root = Path(cfp_root)
    if protocol not in ("FF", "FP"):
        raise ValueError("protocol is FF or FP")
    locate = image_locator(root / images_dir)

    def pair_list(kind: str) -> dict[int, object]:
        entries = {}
        for line in (root / "Protocol" / f"Pair_list_{kind}.txt").read_text().split("\n"):
            if line.strip():
                number, relative = line.split()
                person, pose, file = Path(relative).parts[-3:]  # ../Data/Images/001/frontal/01.jpg
                entries[int(number)] = locate(f"{person}/{pose}/{file}")
        return entries

    first, second = pair_list("F"), pair_list(protocol[1])
    index: dict[object, int] = {}
    images, pairs, issame, folds = [], [], [], []

    def image_id(path) -> int:
        if path not in index:
            index[path] = len(images)
            images.append(path)
        return index[path]

    for fold in range(10):
        for kind in ("same", "diff"):
            for line in (
                (root / "Protocol" / "Split" / protocol / f"{fold + 1:02d}" / f"{kind}.txt").read_text().split()
            ):
                i, j = (int(v) for v in line.split(","))
                pairs.append((image_id(first[i]), image_id(second[j])))
                issame.append(kind == "same")
                folds.append(fold)
    return PairSet(f"cfp_{protocol.lower()}", images, np.asarray(pairs), np.asarray(issame), np.asarray(folds))


# --------------------------------------------------------------------------- embeddings


def l2_normalise(features: np.ndarray) -> np.ndarray:
    return features / np.linalg.norm(features, axis=1, keepdims=True).clip(min=1e-12)


# --------------------------------------------------------------------------- the protocol


@dataclass
class VerificationResult:
    name: str
    pairs: int
    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: list[float]
    fold_thresholds: list[float]  # squared-L2 thresholds chosen on the other 9 folds
    tar_at_far: dict[str, float | None]  # None: too few impostor pairs for that FAR
    auc: float
    fallbacks: int = 0
    roc: dict = field(default_factory=dict, repr=False)


def accuracy_at(threshold: float, distances: np.ndarray, issame: np.ndarray) -> float:
    return float(np.mean((distances < threshold) == issame))


def ten_fold_accuracy(distances: np.ndarray, issame: np.ndarray, folds: np.ndarray) -> tuple[list[float], list[float]]:
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        train_accuracy = [accuracy_at(t, distances[train], issame[train]) for t in THRESHOLDS]
        best = THRESHOLDS[int(np.argmax(train_accuracy))]  # first best, as np.argmax in InsightFace
        thresholds.append(float(best))
        accuracies.append(accuracy_at(best, distances[test], issame[test]))
    return accuracies, thresholds


def evaluate_pairs(pairset: PairSet, plain: np.ndarray, mirrored: np.ndarray, fallbacks: int = 0) -> VerificationResult:
    embeddings = l2_normalise(plain + mirrored)
    first, second = embeddings[pairset.pairs[:, 0]], embeddings[pairset.pairs[:, 1]]
    distances = np.sum((first - second) ** 2, axis=1)
    accuracies, thresholds = ten_fold_accuracy(distances, pairset.issame, pairset.folds)
    similarities = np.sum(first * second, axis=1)
    far, tar, _ = roc_curve(similarities, pairset.issame)
    tar_at_far = {}
    for target in FARS:
        threshold = threshold_at_far(similarities, pairset.issame, target)
        tar_at_far[f"{target:g}"] = (
            None if threshold is None else float(np.mean(similarities[pairset.issame] >= threshold))
        )
    auc = float(np.trapezoid(np.r_[0, tar], np.r_[0, far]))
    return VerificationResult(
        pairset.name,
        len(pairset.issame),
        float(np.mean(accuracies)),
        float(np.std(accuracies)),
        accuracies,
        thresholds,
        tar_at_far,
        auc,
        fallbacks,
        {"far": far.tolist(), "tar": tar.tolist()},
    )


def pair_similarities(pairset: PairSet, plain: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair on single (non-mirrored) embeddings: what the service computes by default."""
    embeddings = l2_normalise(plain)
    return np.sum(embeddings[pairset.pairs[:, 0]] * embeddings[pairset.pairs[:, 1]], axis=1)


def calibrate(pairset: PairSet, plain: np.ndarray) -> dict[str, float]:
    """FAR -> cosine threshold on single (non-mirrored) embeddings: what the service computes by default."""
    return calibration_entry(pair_similarities(pairset, plain), pairset.issame, FARS)["thresholds"]


def plot_roc(results: list[VerificationResult], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 5))
    for result in results:
        far, tar = np.asarray(result.roc["far"]), np.asarray(result.roc["tar"])
        keep = far > 0
        axis.plot(far[keep], tar[keep], label=f"{result.name}: {result.accuracy_mean:.2%} acc, AUC {result.auc:.4f}")
    axis.set_xscale("log")
    axis.set_xlim(1e-4, 1)
    axis.set_ylim(0, 1.01)
    axis.set_xlabel("false accept rate")
    axis.set_ylabel("true accept rate")
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def table_row(model: str, results: dict[str, VerificationResult]) -> str:
    """The paper's Table 2 layout: one row, a column per benchmark (accuracy %)."""
    columns = ["lfw", "lfw_no_overlap", "cfp_ff", "cfp_fp", "agedb_30", "calfw", "cplfw"]
    cells = [
        f"{results[c].accuracy_mean * 100:.2f} ± {results[c].accuracy_std * 100:.2f}" if c in results else "–"
        for c in columns
    ]
    header = "| model | LFW | LFW (people not in training) | CFP-FF | CFP-FP | AgeDB-30 | CALFW | CPLFW |"
    return header + "\n" + "| --- " * (len(columns) + 1) + "|\n" + f"| {model} | " + " | ".join(cells) + " |"


# --------------------------------------------------------------------------- the step


@dataclass
class PairSources:
    """Which benchmarks to read: InsightFace .bin files, a CFP release, LFW's pairs.txt (and people to leave out)."""

    bins: list[Path] = field(default_factory=list)
    cfp: Path | None = None
    cfp_images: str = "aligned112"
    cfp_protocols: tuple[str, ...] = ("FF", "FP")
    lfw_pairs: Path | None = None
    lfw_root: Path | None = None  # default: beside lfw_pairs
    lfw_exclude: Path | None = None  # people (one a line) also left out in a second LFW row, `lfw_no_overlap`

    @classmethod
    def from_roots(
        cls, cfp: Path | None = None, lfw: Path | None = None, lfw_exclude: Path | None = None
    ) -> PairSources:
        """The shared-data layout: CFP's root, LFW's root holding pairs.txt and aligned112/ (or aligned112.npz)."""
        if lfw is None:
            return cls(cfp=cfp)
        return cls(cfp=cfp, lfw_pairs=lfw / "pairs.txt", lfw_root=lfw / "aligned112", lfw_exclude=lfw_exclude)

    def load(self) -> list[PairSet]:
        pairsets = [read_bin(path) for path in self.bins]
        if self.cfp:
            pairsets += [read_cfp(self.cfp, protocol, self.cfp_images) for protocol in self.cfp_protocols]
        if self.lfw_pairs:
            pairsets.append(read_lfw_pairs(self.lfw_pairs, self.lfw_root or self.lfw_pairs.parent))
            if self.lfw_exclude:
                pairsets.append(
                    without_people(pairsets[-1], set(self.lfw_exclude.read_text().split()), "lfw_no_overlap")
                )
        if not pairsets:
            raise ValueError("no benchmark given: at least one of .bin files, CFP, LFW pairs")
        return pairsets

    def argv(self) -> list[str]:
        """The command-line options that read the same benchmarks."""
        argv = ["--bin", *map(str, self.bins)] if self.bins else []
        if self.cfp:
            argv += ["--cfp", str(self.cfp)]
            argv += ["--cfp-images", self.cfp_images] if self.cfp_images != "aligned112" else []
            argv += ["--cfp-protocols", *self.cfp_protocols] if tuple(self.cfp_protocols) != ("FF", "FP") else []
        if self.lfw_pairs:
            argv += ["--lfw-pairs", str(self.lfw_pairs)] + (["--lfw-root", str(self.lfw_root)] if self.lfw_root else [])
            argv += ["--lfw-exclude", str(self.lfw_exclude)] if self.lfw_exclude else []
        return argv


@dataclass
class Calibration:
    """Calibrate the service's thresholds on one benchmark's pairs for one exported file (keyed by its sha256)."""

    on: str  # a benchmark name, e.g. "cfp_fp"
    onnx: Path
    thresholds_file: Path = Path("stra_face/assets/models/thresholds.json")

    def argv(self) -> list[str]:
        return ["--calibrate", self.on, "--thresholds-file", str(self.thresholds_file)]


def embeddings_per_pairset(embedder: Embedder, pairsets: list[PairSet], batch_size: int = 64):
    """(pairset, plain, mirrored, faces not found) for each pair set; an image shared by several
    sets (CFP-FF and CFP-FP share the frontal ones) is embedded once."""
    cache: dict[object, tuple[np.ndarray, np.ndarray]] = {}
    for pairset in pairsets:
        keys = [(pairset.name, i) if isinstance(image, bytes) else str(image) for i, image in enumerate(pairset.images)]
        missing = [i for i, key in enumerate(keys) if key not in cache]
        preparer = FacePreparer(embedder.kind)
        if missing:
            plain, mirrored = embed_images(embedder, [pairset.images[i] for i in missing], batch_size, preparer)
            for k, i in enumerate(missing):
                cache[keys[i]] = (plain[k], mirrored[k])
        yield (
            pairset,
            np.stack([cache[key][0] for key in keys]),
            np.stack([cache[key][1] for key in keys]),
            preparer.fallbacks,
        )


def benchmark(
    embedder: Embedder,
    name: str,
    pairsets: list[PairSet],
    out: Path,
    batch_size: int = 64,
    calibration: Calibration | None = None,
) -> dict[str, VerificationResult]:
    """Runs the protocol on every pair set, writes results.json and roc.png into `out`, and with a
    calibration, the thresholds of that file; returns the results by benchmark name."""
    if calibration and calibration.on not in {pairset.name for pairset in pairsets}:
        raise ValueError(
            f"cannot calibrate on {calibration.on!r}: not among the benchmarks {[p.name for p in pairsets]}"
        )
    results: dict[str, VerificationResult] = {}
    for pairset, plain, mirrored, fallbacks in embeddings_per_pairset(embedder, pairsets, batch_size):
        result = results[pairset.name] = evaluate_pairs(pairset, plain, mirrored, fallbacks)
        tars = ", ".join(
            f"TAR@FAR={far}: {'n/a' if tar is None else f'{tar:.4f}'}" for far, tar in result.tar_at_far.items()
        )
        print(
            f"{pairset.name:<10} {result.pairs} pairs  "
            f"accuracy {result.accuracy_mean:.4f} ± {result.accuracy_std:.4f}  "
            f"AUC {result.auc:.4f}  {tars}  (no face found: {result.fallbacks})"
        )
        if calibration and calibration.on == pairset.name:
            similarities = pair_similarities(pairset, plain)
            entry = calibration_entry(similarities, pairset.issame)
            write_thresholds(
                calibration.thresholds_file,
                sha256_file(calibration.onnx),
                {
                    "model": calibration.onnx.name,
                    "dataset": f"{pairset.name} ({result.pairs} pairs, single embedding, no mirror)",
                    "pairs": result.pairs,
                    **entry,
                },
            )
            # the scores behind the calibration, for its histogram (docs/figures/score_histograms.png)
            out.mkdir(parents=True, exist_ok=True)
            np.savez(out / f"scores_{pairset.name}.npz", similarities=similarities, issame=pairset.issame)
            print(f"calibrated on {pairset.name}: {entry['thresholds']} -> {calibration.thresholds_file}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({k: {f: v for f, v in asdict(r).items() if f != "roc"} for k, r in results.items()}, indent=2)
    )
    plot_roc(list(results.values()), out / "roc.png", f"ROC: {name}")
    print(table_row(name, results))
    print(f"results and ROC plot in {out}")
    return results


def reproduce_command(
    onnx: Path, sources: PairSources, out: Path, calibration: Calibration | None = None, name: str | None = None
) -> str:
    """The command line that benchmarks (and calibrates) an exported file as `benchmark` just did."""
    argv = ["--onnx", str(onnx), *sources.argv(), "--out", str(out)] + (["--name", name] if name else [])
    return "python -m stra_face.training.eval " + shlex.join([*argv, *(calibration.argv() if calibration else [])])


# --------------------------------------------------------------------------- command


def run(args: argparse.Namespace, error: Callable[[str], None]) -> dict[str, VerificationResult]:
    """The benchmark of cli.py's parsed arguments; `error` reports a bad combination of them (exits)."""
    sources = PairSources(
        args.bin, args.cfp, args.cfp_images, tuple(args.cfp_protocols), args.lfw_pairs, args.lfw_root, args.lfw_exclude
    )
    if not (args.bin or args.cfp or args.lfw_pairs):
        error("give at least one of --bin, --cfp, --lfw-pairs")
    if args.calibrate and not args.onnx:
        error("--calibrate needs --onnx: thresholds are keyed by the exported file's sha256")
    if args.onnx:
        embedder, name = onnx_embedder(args.onnx), args.name or args.onnx.stem
    elif args.checkpoint:
        embedder, name = (
            torch_embedder(load_checkpoint_model(args.checkpoint)[0]),
            args.name or args.checkpoint.parent.name,
        )
    else:
        embedder, name = teacher_embedder(), args.name or "dlib_resnet_v1 (teacher)"
    calibration = Calibration(args.calibrate, args.onnx, args.thresholds_file) if args.calibrate else None
    pairsets = sources.load()
    if calibration and calibration.on not in {pairset.name for pairset in pairsets}:
        error(f"--calibrate {calibration.on}: not among the benchmarks given ({', '.join(p.name for p in pairsets)})")
    return benchmark(embedder, name, pairsets, args.out, args.batch_size, calibration)
