"""FER2013's framing, measured with the service's own detector, and what matching it does.

    nice -n 10 python benchmarks/fer_crop_geometry.py \
        --checkpoint ../shared/checkpoints/fer2013/resnet50_stra_fer2013_e12_fp16.pt

1. Template: the service's MTCNN (stra_face.vision.detect) runs on every `--template-split`
   image upscaled 4x (bicubic, plus a 25% grey border so faces that fill the frame are still
   found); the 5 landmarks of the largest face are mapped back into the 48x48 frame and averaged.
   Printed: detection rate, mean and spread per landmark, and the distance to the committed
   `stra_face.vision.align.FER2013_TEMPLATE` (the constant the service crops to).
2. PrivateTest through the service path: each `--eval-split` image, upscaled 4x, is detected,
   aligned and cropped back to 48x48 the old way (ArcFace template zoomed 0.8, the service up to
   this change) and the new way (`expression_crop`: FER2013_TEMPLATE, area-resampled), and the
   checkpoint is evaluated on raw / old / new crops of the detected images.
3. Photos: the hand-labelled photos of `--photo-labels` (../shared/data/faces) through detect ->
   old / new crop -> model; predictions listed per photo, accuracy for all and for the clear ones.
A figure of example crops goes to `--figure`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stra_face.training.fer.data import FerData, load_fer2013  # noqa: E402
from stra_face.vision.align import FER2013_TEMPLATE, expression_crop, similarity_transform  # noqa: E402
from stra_face.vision.detect import FaceDetector  # noqa: E402
from stra_face.vision.preprocess import EXPRESSION_SIZE, EXPRESSIONS  # noqa: E402

UPSCALE = 4
LANDMARKS = ("left eye", "right eye", "nose", "mouth left", "mouth right")


def legacy_expression_crop(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The service's expression crop before the measured template: ArcFace template zoomed 0.8."""
    matrix = similarity_transform(landmarks, EXPRESSION_SIZE, 0.8)
    crop = cv2.warpAffine(
        image, matrix, (EXPRESSION_SIZE, EXPRESSION_SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )
    return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop


def detect_padded(detector: FaceDetector, image: np.ndarray) -> np.ndarray | None:
    """Landmarks (5, 2) of the largest face in image coordinates; detection runs with a 25% grey
    border so tight crops (the face filling the frame) are found too."""
    pad = max(image.shape[:2]) // 4
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, -1)
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    detections = detector.detect(padded)
    return None if not detections else detections[0].landmarks - pad


def upscale(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC)


def to_fer_frame(points: np.ndarray) -> np.ndarray:
    """Upscaled-image pixel coordinates -> 48x48 pixel coordinates (cv2.resize's pixel-centre convention)."""
    return (points + 0.5) / UPSCALE - 0.5


def detect_split(detector: FaceDetector, images: np.ndarray, cache: Path) -> np.ndarray:
    """(N, 5, 2) landmarks in the upscaled frame, NaN where no face was found; cached."""
    if cache.exists():
        landmarks = np.load(cache)["landmarks"]
        if len(landmarks) == len(images):
            return landmarks
    landmarks = np.full((len(images), 5, 2), np.nan, np.float32)
    for i, image in enumerate(tqdm(images, desc=f"detect {cache.stem}")):
        found = detect_padded(detector, upscale(image))
        if found is not None:
            landmarks[i] = found
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, landmarks=landmarks)
    return landmarks


@dataclass
class Template:
    mean: np.ndarray  # (5, 2) in the 48x48 frame
    std: np.ndarray
    detected: int
    total: int


def measure_template(landmarks_up: np.ndarray) -> Template:
    found = ~np.isnan(landmarks_up).any(axis=(1, 2))
    points = to_fer_frame(landmarks_up[found])
    return Template(points.mean(0), points.std(0), int(found.sum()), len(found))


def accuracy_table(predict, variants: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, dict[str, float]]:
    from stra_face.training.fer.trainer import predict_probabilities

    table = {}
    for name, images in variants.items():
        data = FerData(images, labels, np.full(len(labels), "PrivateTest"))
        table[name] = {
            tta: float((predict_probabilities(predict, data, tta).argmax(1) == labels).mean())
            for tta in ("none", "flip")
        }
    return table


def read_photo_labels(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader((line for line in handle if not line.startswith("#")), delimiter="\t"))


def save_figure(path: Path, rows: list[tuple[str, list[np.ndarray]]], columns: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(rows), len(columns), figsize=(1.3 * len(columns), 1.45 * len(rows)), squeeze=False)
    for r, (title, crops) in enumerate(rows):
        for c, crop in enumerate(crops):
            axes[r, c].imshow(crop, cmap="gray", vmin=0, vmax=255)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(columns[c], fontsize=8)
        axes[r, 0].set_ylabel(title, fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/fer2013/fer2013_jpg.npz")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help=(
            "FER checkpoint to evaluate (stra_face.training.fer.trainer.load_checkpoint_model); "
            "omit to measure the template only"
        ),
    )
    parser.add_argument("--template-split", default="PublicTest")
    parser.add_argument("--eval-split", default="PrivateTest")
    parser.add_argument("--limit", type=int, default=0, help="a seeded random N images per split (0: all)")
    parser.add_argument("--photos", type=Path, default=Path("../shared/data/faces"))
    parser.add_argument("--photo-labels", type=Path, default=Path(__file__).with_name("fer_photo_labels.tsv"))
    parser.add_argument("--cache", type=Path, default=Path("runs/fer_crop_geometry"))
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/fer_crop_geometry.png"))
    parser.add_argument("--json", type=Path, help="write every number as JSON")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (MTCNN on small images gains nothing from more on a shared CPU)",
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    detector = FaceDetector()
    data = load_fer2013(args.data)
    results: dict = {}

    # 1. the template
    source = data.split(args.template_split)
    source = source.sample(args.limit) if args.limit else source
    template = measure_template(
        detect_split(detector, source.images, args.cache / f"{args.template_split}_{len(source)}.npz")
    )
    print(
        f"\n{args.template_split}: face found in {template.detected}/{template.total} "
        f"({template.detected / template.total:.1%}) upscaled images"
    )
    print(f"{'landmark':<12} {'mean x':>7} {'mean y':>7} {'std x':>6} {'std y':>6}")
    for name, mean, std in zip(LANDMARKS, template.mean, template.std):
        print(f"{name:<12} {mean[0]:7.2f} {mean[1]:7.2f} {std[0]:6.2f} {std[1]:6.2f}")
    print(
        "template (paste into stra_face/vision/align.py FER2013_TEMPLATE):",
        json.dumps(np.round(template.mean.astype(float), 2).tolist()),
    )
    print(f"max distance to the committed FER2013_TEMPLATE: {np.abs(template.mean - FER2013_TEMPLATE).max():.3f} px")
    results["template"] = {
        "split": args.template_split,
        "detected": template.detected,
        "total": template.total,
        "mean": template.mean.tolist(),
        "std": template.std.tolist(),
    }

    if args.checkpoint is None:
        return
    from stra_face.training.fer.trainer import load_checkpoint_model, predict_probabilities, torch_predictor

    predict = torch_predictor(load_checkpoint_model(args.checkpoint)[0])

    # 2. the evaluation split through the service path
    target = data.split(args.eval_split)
    target = target.sample(args.limit) if args.limit else target
    landmarks = detect_split(detector, target.images, args.cache / f"{args.eval_split}_{len(target)}.npz")
    found = np.flatnonzero(~np.isnan(landmarks).any(axis=(1, 2)))
    raw = target.images[found]
    old = np.stack([legacy_expression_crop(upscale(target.images[i]), landmarks[i]) for i in found])
    new = np.stack([expression_crop(upscale(target.images[i]), landmarks[i]) for i in found])
    table = accuracy_table(
        predict,
        {"raw 48x48 images": raw, "old crop (ArcFace x0.8)": old, "new crop (FER2013 template)": new},
        target.labels[found],
    )
    print(
        f"\n{args.eval_split}: face found in {len(found)}/{len(target)} ({len(found) / len(target):.1%}); "
        "accuracy on those, TTA none / flip"
    )
    for name, row in table.items():
        print(f"{name:<30} {row['none']:.2%} / {row['flip']:.2%}")
    print(
        f"mean |crop - raw| grey levels: old {np.abs(old.astype(int) - raw).mean():.1f}, "
        f"new {np.abs(new.astype(int) - raw).mean():.1f}"
    )
    results["eval"] = {
        "split": args.eval_split,
        "detected": len(found),
        "total": len(target),
        "accuracy": table,
        "mean_abs_diff_to_raw": {
            "old": float(np.abs(old.astype(int) - raw).mean()),
            "new": float(np.abs(new.astype(int) - raw).mean()),
        },
    }

    # 3. the hand-labelled photos
    rows, figure_rows = [], [(f"{args.eval_split} {j}", [raw[j], old[j], new[j]]) for j in range(4)]
    for item in read_photo_labels(args.photo_labels):
        image = cv2.cvtColor(cv2.imread(str(args.photos / item["path"]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        points = detect_padded(detector, image)
        if points is None:
            rows.append({**item, "old": "no face", "new": "no face"})
            continue
        crops = np.stack([legacy_expression_crop(image, points), expression_crop(image, points)])
        probabilities = predict_probabilities(
            predict, FerData(crops, np.zeros(2, np.int64), np.full(2, "photo")), "flip"
        )
        rows.append(
            {**item, "old": EXPRESSIONS[probabilities[0].argmax()], "new": EXPRESSIONS[probabilities[1].argmax()]}
        )
        if item["path"].startswith("more/bbt/images/") and "/" not in item["path"][len("more/bbt/images/") :]:
            figure_rows.append((Path(item["path"]).stem, [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), crops[0], crops[1]]))
    print(f"\n{'photo':<58} {'label':<9} {'clear':<5} {'old crop':<9} new crop")
    for row in rows:
        print(f"{row['path']:<58} {row['label']:<9} {row['clear']:<5} {row['old']:<9} {row['new']}")
    summary = {}
    for subset, keep in (("all", lambda r: True), ("clear", lambda r: r["clear"] == "yes")):
        chosen = [r for r in rows if keep(r)]
        summary[subset] = {
            "photos": len(chosen),
            **{way: sum(r[way] == r["label"] for r in chosen) for way in ("old", "new")},
        }
        print(
            f"{subset:<5} photos: {len(chosen)}; correct with the old crop {summary[subset]['old']}, "
            f"with the new crop {summary[subset]['new']} (flip TTA, as the service)"
        )
    results["photos"] = {"rows": rows, "summary": summary}

    save_figure(args.figure, figure_rows, ["raw / photo", "old crop", "new crop"])
    print(f"figure: {args.figure}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
