"""`stra-face calibrate DIR`: thresholds for the current embedding model, calibrated on your own people.

    stra-face calibrate photos/ --out thresholds.json      # photos/<person>/<any name>.jpg, raw photos
    STRA_THRESHOLDS_FILE=thresholds.json stra-face serve   # the service then decides with them

Every photo goes through the service's own path (decode, MTCNN, quality gate, 5-point alignment, the
embedding model of STRA_EMBEDDING_MODEL, no mirroring unless STRA_FLIP_EMBEDDINGS): its largest face that
passes the quality gate. Every pair of photos is scored: pairs of one person are genuine, pairs of two
are impostors. Written: the thresholds file (FAR -> cosine threshold, the impostor table behind
`far_at_score`, TAR at each FAR, the number of pairs), keyed by the model's sha256 (other models' entries
stay), and the ROC curve beside it (`<out>.roc.png`; `<out>.roc.csv` where matplotlib is not installed).
A FAR needs at least 1/FAR impostor pairs to be measured at all, and ~10/FAR to be measured well: the
command warns below either. Runs on the base install (ONNX Runtime, no torch).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stra_face.config import PipelineSettings
from stra_face.vision.thresholds import CALIBRATION_FARS, calibration_entry, roc_curve, write_thresholds

if TYPE_CHECKING:  # imported where used: the models' stack (ONNX, OpenCV) loads after --help
    from stra_face.vision.inference import EmbeddingModel

IMAGES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
WELL_MEASURED = 10  # impostor acceptances a FAR should rest on


def identity_folders(root: Path, max_images: int | None = None) -> list[tuple[str, Path]]:
    """(person, photo) for every photo in root/<person>/, people in name order."""
    photos = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGES)
        photos += [(folder.name, file) for file in files[:max_images]]
    return photos


def embed_photos(
    photos: list[tuple[str, Path]], settings: PipelineSettings, model: EmbeddingModel
) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """(people, files, embeddings (N, D) L2-normalised, skipped) for the photos with a usable face."""
    from stra_face.bundle import quality_gate
    from stra_face.vision.align import align_face
    from stra_face.vision.decode import ImageError, decode_image
    from stra_face.vision.detect import FaceDetector
    from stra_face.vision.quality import assess

    detector = FaceDetector(
        settings.min_face_size,
        settings.detection_threshold,
        settings.detection_size,
        providers=model.providers,
        small_faces=settings.small_faces,
    )
    gate = quality_gate(settings)
    people, files, faces, skipped = [], [], [], []
    for person, file in photos:
        try:
            image = decode_image(file.read_bytes(), settings.max_image_bytes, settings.max_image_pixels)
        except ImageError as error:
            skipped.append(f"{file}: {error}")
            continue
        good = [d for d in detector.detect(image) if assess(image, d, gate).passed]
        if not good:
            skipped.append(f"{file}: no face passes the quality gate")
            continue
        people.append(person)
        files.append(str(file))
        faces.append(align_face(image, max(good, key=lambda d: d.area).landmarks, model.input_kind))
    embeddings = (
        np.concatenate(
            [model.embed(np.stack(faces[i : i + 32]), settings.flip_embeddings) for i in range(0, len(faces), 32)]
        )
        if faces
        else np.zeros((0, model.dim))
    )
    return people, files, embeddings, skipped


def all_pairs(people: list[str], embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(similarity, same person) of every pair of photos."""
    first, second = np.triu_indices(len(people), k=1)
    labels = np.asarray(people)
    return np.einsum("ij,ij->i", embeddings[first], embeddings[second]), labels[first] == labels[second]


def warnings_for(fars, genuine: int, impostors: int) -> list[str]:
    notes = []
    for far in fars:
        if impostors * far < 1:
            notes.append(
                f"FAR {far:g}: not measurable with {impostors} impostor pairs "
                f"(needs >= {int(np.ceil(1 / far))}); no threshold written"
            )
        elif impostors * far < WELL_MEASURED:
            notes.append(
                f"FAR {far:g}: rests on {int(impostors * far)} impostor acceptance(s) of {impostors} pairs "
                f"(>= {int(WELL_MEASURED / far)} pairs for {WELL_MEASURED}); add people"
            )
    if genuine < 100:
        notes.append(f"only {genuine} genuine pairs: TAR is coarse (add photos per person)")
    return notes


def save_roc(similarities: np.ndarray, issame: np.ndarray, thresholds: dict[str, float], out: Path, title: str) -> Path:
    far, tar, score = roc_curve(similarities, issame)
    try:
        import matplotlib
    except ImportError:  # the base install: the curve as numbers
        path = out.with_suffix(".roc.csv")
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows(
                [("far", "tar", "threshold"), *zip(far.tolist(), tar.tolist(), score.tolist())]
            )
        return path
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 5))
    keep = far > 0
    axis.plot(far[keep], tar[keep])
    for far_key, threshold in thresholds.items():
        point = float(np.mean(similarities[issame] >= threshold))
        axis.plot(float(far_key), point, "o", label=f"FAR {far_key}: TAR {point:.3f} (cosine {threshold:.4f})")
    axis.set(
        xscale="log",
        xlim=(max(1e-4, far[keep].min()), 1),
        ylim=(0, 1.01),
        xlabel="false accept rate",
        ylabel="true accept rate",
        title=title,
    )
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path = out.with_suffix(".roc.png")
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="stra-face calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="one folder per person, raw photos inside")
    parser.add_argument(
        "--out", type=Path, default=Path("thresholds.json"), help="thresholds file to write (STRA_THRESHOLDS_FILE)"
    )
    parser.add_argument("--far", type=float, nargs="+", default=list(CALIBRATION_FARS), help="FARs to calibrate")
    parser.add_argument(
        "--max-images-per-person",
        type=int,
        help="cap per person (one person with hundreds of photos dominates the genuine pairs)",
    )
    parser.add_argument(
        "--save-embeddings",
        type=Path,
        help="also write people, files and embeddings (.npz), e.g. for benchmarks/open_set.py",
    )
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    from stra_face.vision.inference import EmbeddingModel
    from stra_face.vision.providers import select_providers

    settings = PipelineSettings()
    model = EmbeddingModel(
        Path(settings.embedding_model), select_providers(settings.providers), settings.intra_op_threads
    )
    people, files, embeddings, skipped = embed_photos(
        identity_folders(args.folder, args.max_images_per_person), settings, model
    )
    for note in skipped:
        print(f"skipped {note}", file=sys.stderr)
    if len(set(people)) < 2:
        parser.error(
            f"{args.folder}: calibration needs photos of at least two people with a usable face "
            f"({len(set(people))} found)"
        )
    if args.save_embeddings:
        np.savez(args.save_embeddings, people=np.asarray(people), files=np.asarray(files), embeddings=embeddings)
    similarities, issame = all_pairs(people, embeddings)
    entry = calibration_entry(similarities, issame, tuple(args.far))
    description = (
        f"{args.folder.resolve()} ({len(set(people))} people, {len(people)} photos, "
        f"{len(similarities)} pairs, single embedding)"
    )
    entry.update(
        {
            "model": model.path.name,
            "dataset": description,
            "pairs": len(similarities),
            "warnings": warnings_for(args.far, entry["genuine_pairs"], entry["impostor_pairs"]),
        }
    )
    write_thresholds(args.out, model.sha256, entry)
    roc = save_roc(similarities, issame, entry["thresholds"], args.out, f"{model.path.name} on {args.folder.name}")
    print(
        f"{len(people)} photos of {len(set(people))} people ({len(skipped)} skipped): "
        f"{entry['genuine_pairs']} genuine, {entry['impostor_pairs']} impostor pairs"
    )
    for far, threshold in entry["thresholds"].items():
        print(f"  FAR {far:>6}: cosine >= {threshold:.4f}  TAR {entry['tar_at_far'][far]:.4f}")
    for note in entry["warnings"]:
        print(f"warning: {note}")
    print(f"thresholds for {model.path.name} ({model.sha256[:12]}) -> {args.out}; ROC -> {roc}")
    print(f"serve with them: STRA_THRESHOLDS_FILE={args.out} stra-face serve")
    return entry


if __name__ == "__main__":
    main()
