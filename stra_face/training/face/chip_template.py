"""Measure where the service's MTCNN landmarks land on dlib's 150x150 face chip: the 5-point template
that `stra_face.vision.align` uses to cut dlib's chip without dlib (needs the `teacher` extra).

For every image where dlib's HOG detector and MTCNN find the same (largest) face, dlib's own chip
geometry (shape_predictor_5 + get_face_chip_details, size 150, padding 0.25) maps MTCNN's five
landmarks into chip pixels. The template is their per-coordinate median: where dlib's 5-point
predictor slips on a poor image, the chip itself is off and would drag a mean.

    python -m stra_face.training.face.chip_template measure --images ../shared/data/lfw/raw_sample \\
        ../shared/data/cfp/raw_sample/00[1-5]/frontal --out runs/template/faces.npz

`compare` then embeds the same faces both ways: dlib's pipeline (its chip, dlib-bin's network) and
ours (MTCNN landmarks + DLIB_CHIP_TEMPLATE + the exported port), and reports how far apart the two
descriptors of each face are and how well each way separates same-person pairs from different-person
pairs among those faces (identity = the image's folder; the person folder in CFP's layout).

    python -m stra_face.training.face.chip_template compare --faces runs/template/faces.npz \\
        --onnx stra_face/assets/models/dlib_resnet_v1.onnx
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stra_face.models.dlib_resnet import DLIB_CHIP_PADDING, DLIB_CHIP_SIZE, dlib_model_file

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
LANDMARKS = ("left eye", "right eye", "nose", "mouth left", "mouth right")


def mapping_to_chip(details) -> np.ndarray:
    """dlib's get_mapping_to_chip (image_transforms/interpolation.h): 2x3 affine, image -> chip pixels."""
    rect, angle = details.rect, details.angle
    centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = np.array([[rect.left(), rect.top()], [rect.right(), rect.top()], [rect.right(), rect.bottom()]])
    source = (corners - centre) @ rotation.T + centre
    target = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]], np.float64)
    # Solve [x y 1] @ M.T = target for the three corner pairs.
    return np.linalg.solve(np.c_[source, np.ones(3)], target).T


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
    return width * height / union if union > 0 else 0.0


def measure(paths: list[Path]) -> dict[str, np.ndarray]:
    """Per face found by both detectors: its image, MTCNN landmarks (image and chip pixels) and
    dlib's own descriptor of dlib's own chip."""
    import dlib

    from stra_face.vision.decode import decode_image
    from stra_face.vision.detect import FaceDetector

    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks.dat")))
    encoder = dlib.face_recognition_model_v1(str(dlib_model_file()))
    mtcnn = FaceDetector()
    found: dict[str, list] = {"paths": [], "landmarks": [], "chip_points": [], "dlib_descriptors": []}
    for path in tqdm(paths, desc="faces", unit="img"):
        image = decode_image(path.read_bytes())
        rects = sorted(hog(image, 1), key=lambda r: r.area(), reverse=True)
        faces = mtcnn.detect(image)
        if not rects or not faces:
            continue
        rect = rects[0]
        if box_iou(np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], float), faces[0].box) < 0.3:
            continue  # the two detectors picked different faces
        shape = predictor(image, rect)
        matrix = mapping_to_chip(dlib.get_face_chip_details(shape, size=DLIB_CHIP_SIZE, padding=DLIB_CHIP_PADDING))
        chip = dlib.get_face_chip(image, shape, size=DLIB_CHIP_SIZE, padding=DLIB_CHIP_PADDING)
        found["paths"].append(str(path))
        found["landmarks"].append(faces[0].landmarks)
        found["chip_points"].append(faces[0].landmarks @ matrix[:, :2].T + matrix[:, 2])
        found["dlib_descriptors"].append(np.asarray(encoder.compute_face_descriptor(chip)))
    return {key: np.array(values) for key, values in found.items()}


def identity(path: str) -> str:
    parts = Path(path).parts
    return parts[-3] if parts[-2] in ("frontal", "profile") else parts[-2]


def separation(descriptors: np.ndarray, identities: list[str]) -> dict:
    """All pairs of faces: ROC AUC of -distance for same vs different person, the best accuracy over
    thresholds, and the accuracy at dlib's documented 0.6."""
    labels = np.array(identities)
    first, second = np.triu_indices(len(labels), 1)
    distances = np.linalg.norm(descriptors[first] - descriptors[second], axis=1)
    same = labels[first] == labels[second]
    auc = float(np.mean(distances[same][:, None] < distances[~same][None]))
    accuracies = [np.mean((distances < t) == same) for t in np.arange(0.2, 1.2, 0.005)]
    return {
        "pairs": int(len(same)),
        "same_pairs": int(same.sum()),
        "auc": auc,
        "best_accuracy": float(max(accuracies)),
        "accuracy_at_0.6": float(np.mean((distances < 0.6) == same)),
    }


def compare(faces: dict[str, np.ndarray], onnx: Path) -> dict:
    from stra_face.vision.align import align_face
    from stra_face.vision.decode import decode_image
    from stra_face.vision.inference import EmbeddingModel

    model = EmbeddingModel(onnx, ["CPUExecutionProvider"])
    ours = []
    for path, landmarks in tqdm(list(zip(faces["paths"], faces["landmarks"])), desc="ours", unit="img"):
        image = decode_image(Path(str(path)).read_bytes())
        ours.append(model.run(to_input(align_face(image, landmarks, model.input_kind), model))[0])
    ours = np.array(ours)
    theirs = faces["dlib_descriptors"]
    gap = np.linalg.norm(theirs - ours, axis=1)
    identities = [identity(str(p)) for p in faces["paths"]]
    return {
        "faces": len(ours),
        "people": len(set(identities)),
        "descriptor_distance_dlib_vs_ours": {
            "mean": float(gap.mean()),
            "median": float(np.median(gap)),
            "max": float(gap.max()),
        },
        "dlib_pipeline": separation(theirs, identities),
        "mtcnn_template_port": separation(ours, identities),
    }


def to_input(chip: np.ndarray, model) -> np.ndarray:
    from stra_face.vision.preprocess import to_face_input

    return to_face_input(chip[None], model.input_kind)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stra_face.training.face.chip_template", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    measuring = commands.add_parser("measure", help="detect both ways, print the template")
    measuring.add_argument("--images", type=Path, nargs="+", required=True, help="folders of raw (unaligned) photos")
    measuring.add_argument("--out", type=Path, required=True, help=".npz of the faces found (for `compare`)")
    comparing = commands.add_parser("compare", help="embed the measured faces both ways")
    comparing.add_argument("--faces", type=Path, required=True, help="the .npz written by `measure`")
    comparing.add_argument("--onnx", type=Path, required=True, help="the exported port")
    comparing.add_argument("--json", type=Path, help="write the comparison here too")
    args = parser.parse_args(argv)

    if args.command == "measure":
        paths = sorted(p for root in args.images for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        faces = measure(paths)
        if not len(faces["paths"]):
            raise SystemExit("no face found by both detectors")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.out, **faces)
        points = faces["chip_points"]
        median, mean, spread = np.median(points, axis=0), points.mean(axis=0), points.std(axis=0)
        print(f"{len(points)} faces of {len(paths)} images; MTCNN landmarks on dlib's {DLIB_CHIP_SIZE}px chip:")
        for name, (x, y), (mx, my), (sx, sy) in zip(LANDMARKS, median, mean, spread):
            print(f"  {name:<12} median ({x:6.2f}, {y:6.2f})   mean ({mx:6.2f}, {my:6.2f}) ± ({sx:5.2f}, {sy:5.2f})")
        print("template (median) = " + json.dumps(np.round(median, 4).tolist()))
    else:
        result = compare(dict(np.load(args.faces)), args.onnx)
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
