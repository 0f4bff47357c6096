"""Static int8 quantisation (ONNX Runtime) of the shipped models, calibrated on real training-side data.

    python -m stra_face.training.export.quantize embedding  --out runs/int8/dlib_resnet_v1_int8.onnx
    python -m stra_face.training.export.quantize expression --out runs/int8/expression_int8.onnx
    python -m stra_face.training.export.quantize mtcnn      --out runs/int8/   # mtcnn_{rnet,onet}_int8.onnx

Each model is widened to fp32 (the shipped fp16 files), pre-processed (`quant_pre_process`: shape
inference, graph optimisation), then quantised with per-channel int8 weights and activations whose
ranges come from real inputs the model sees in the service:
- embedding: celeba299's aligned faces (training-side identities, never a benchmark's images), cut to
  the face the model reads (its card's `input_kind`) as the evaluation does;
- expression: FER2013 Training images (never PublicTest / PrivateTest);
- MTCNN R-Net / O-Net: the crops the detector's own cascade sends them on celeba299 photos.
A card beside each file copies the source model's card and says how it was quantised; accuracy is
measured afterwards with the benchmarks' own tools (docs/results.md, int8) and added to the card.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from stra_face.vision.cards import ModelCard, file_facts, sha256_file
from stra_face.vision.inference import has_fp16_weights, widen_fp16

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
CELEBA = DATA / "celeba299" / "aligned112"
FER = DATA / "fer2013" / "fer2013_jpg.npz"
MODELS = Path(__file__).resolve().parents[2] / "assets" / "models"


def celeba_faces(folder: Path = CELEBA, count: int = 512, seed: int = 0) -> np.ndarray:
    """`count` aligned 112x112 RGB faces (uint8, N x 112 x 112 x 3), at most two per identity, picked at random."""
    from stra_face.training.eval.embedders import load_rgb

    people = sorted(p for p in folder.iterdir() if p.is_dir())
    rng = np.random.default_rng(seed)
    files = [f for person in people for f in sorted(person.glob("*.jpg"))[:2]]
    chosen = rng.choice(len(files), min(count, len(files)), replace=False)
    return np.stack([load_rgb(files[i]) for i in sorted(chosen)])


def embedding_inputs(model_path: Path, faces: np.ndarray) -> np.ndarray:
    """The embedding model's input for ArcFace-aligned crops, cut to the face its card names (as the eval cuts it)."""
    from stra_face.vision.align import ARCFACE_TEMPLATE, align_face
    from stra_face.vision.preprocess import ARCFACE_112, FACE_INPUTS, to_face_input

    card = ModelCard.beside(model_path)
    kind = FACE_INPUTS[(card and card.input_kind) or ARCFACE_112.name]
    aligned = faces if kind == ARCFACE_112 else np.stack([align_face(face, ARCFACE_TEMPLATE, kind) for face in faces])
    return to_face_input(aligned, kind)


def expression_inputs(path: Path = FER, count: int = 1024, seed: int = 0, split: str = "Training") -> np.ndarray:
    """`count` FER2013 images of `split` as the expression model's input (N, 1, 48, 48), picked at random."""
    from stra_face.training.fer.data import load_fer2013
    from stra_face.vision.preprocess import to_expression_input

    data = load_fer2013(path)
    rows = np.flatnonzero(data.usage == split)
    chosen = np.sort(np.random.default_rng(seed).choice(rows, min(count, len(rows)), replace=False))
    return to_expression_input(data.images[chosen])


def mtcnn_inputs(
    photos: np.ndarray, rnet_count: int = 2048, onet_count: int = 1024, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The R-Net and O-Net crops the detector's cascade makes on `photos` (each also at 2x, so that
    candidates cover more sizes), `rnet_count` / `onet_count` of them at random."""
    import cv2

    from stra_face.vision.detect import FaceDetector

    detector = FaceDetector(min_face_size=12)
    rnet, onet = [], []
    for photo in photos:
        for image in (photo, cv2.resize(photo, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)):
            cascade = detector.propose(image)
            if not len(cascade.crops):
                continue
            rnet.append(cascade.crops)
            cascade = detector.refine(cascade, detector.run_rnet(cascade.crops))
            if len(cascade.crops):
                onet.append(cascade.crops)
    rng = np.random.default_rng(seed)
    rnet_all, onet_all = np.concatenate(rnet), np.concatenate(onet)
    pick = lambda crops, count: crops[np.sort(rng.choice(len(crops), min(count, len(crops)), replace=False))]  # noqa: E731
    return pick(rnet_all, rnet_count), pick(onet_all, onet_count)


class _Batches:
    """onnxruntime's CalibrationDataReader over an array of inputs, `batch` at a time."""

    def __init__(self, name: str, inputs: np.ndarray, batch: int):
        self.name, self.inputs, self.batch = name, inputs, batch
        self.rewind()

    def get_next(self) -> dict | None:
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches: Iterator[dict] = (
            {self.name: np.ascontiguousarray(self.inputs[i : i + self.batch])}
            for i in range(0, len(self.inputs), self.batch)
        )


def quantize(
    source: Path,
    out: Path,
    inputs: np.ndarray,
    batch: int = 32,
    quant_format: str = "qdq",
    calibration: str = "minmax",
    exclude_ops: tuple[str, ...] = (),
) -> Path:
    """`source` (fp16 or fp32 ONNX) -> `out`: int8 weights per channel, int8 activations over the ranges
    `inputs` give (calibration "minmax", "percentile" or "entropy"); `exclude_ops` op types stay in fp32."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(source))
    if has_fp16_weights(model):
        model = widen_fp16(model)
    with tempfile.TemporaryDirectory() as scratch:
        widened, prepared = Path(scratch) / "fp32.onnx", Path(scratch) / "prepared.onnx"
        onnx.save(model, str(widened))
        quant_pre_process(str(widened), str(prepared), skip_symbolic_shape=True)
        prepared_model = onnx.load(str(prepared))
        name = prepared_model.graph.input[0].name
        excluded = [node.name for node in prepared_model.graph.node if node.op_type in exclude_ops]
        quantize_static(
            str(prepared),
            str(out),
            _Batches(name, inputs, batch),
            quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
            per_channel=True,
            activation_type=QuantType.QInt8 if quant_format == "qdq" else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "percentile": CalibrationMethod.Percentile,
                "entropy": CalibrationMethod.Entropy,
            }[calibration],
            nodes_to_exclude=excluded,
            extra_options={"CalibMaxIntermediateOutputs": 8} if calibration != "minmax" else {},
        )
    return out


def write_card(source: Path, out: Path, how: str, calibrated_on: str) -> Path:
    """The card of a quantised file: the source's, with this file's facts and how it was made (no metrics yet)."""
    card = ModelCard.beside(source) or ModelCard(task=f"int8 quantisation of {source.name}")
    card.__dict__.update(file_facts(out))
    card.precision = "int8"
    card.metrics = None
    card.parity_max_abs_error = None
    card.extra = {k: v for k, v in card.extra.items() if not any(w in k for w in ("metric", "reproduce", "parity"))}
    card.extra["quantization"] = {
        "source": source.name,
        "source_sha256": sha256_file(source),
        "method": how,
        "calibrated_on": calibrated_on,
        "tool": "python -m stra_face.training.export.quantize",
    }
    return card.write(out)


def add_metrics(model: Path, results: Path, reproduce: str, **extra: object) -> Path:
    """The card of `model` with the benchmarks' results (a `results.json` of `stra_face.training.eval` or the
    `--json` of `stra_face.training.fer eval`), the command that measured them, and `extra` facts (speed)."""
    import json

    card = ModelCard.read(model)
    card.metrics = json.loads(Path(results).read_text())
    card.reproduce = reproduce
    card.extra.update(extra)
    return card.write(model)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stra_face.training.export.quantize", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "model", choices=["embedding", "expression", "mtcnn", "card"], help="card: add --results to --out's card"
    )
    parser.add_argument("--results", type=Path, help="card: the benchmark's results JSON")
    parser.add_argument("--reproduce", default="", help="card: the command that measured --results")
    parser.add_argument("--out", type=Path, required=True, help="the file (a folder for mtcnn)")
    parser.add_argument("--source", type=Path, help="default: the shipped model")
    parser.add_argument("--count", type=int, default=512, help="calibration inputs (mtcnn: photos)")
    parser.add_argument("--format", choices=["qdq", "qoperator"], default="qdq")
    parser.add_argument("--calibration", choices=["minmax", "percentile", "entropy"], default="minmax")
    parser.add_argument("--exclude-ops", nargs="*", default=[], help="op types left in fp32")
    args = parser.parse_args(argv)
    how = (
        f"onnxruntime.quantization.quantize_static, {args.format.upper()}, per-channel int8 weights, "
        f"int8 activations ({args.calibration})"
    )
    if args.exclude_ops:
        how += f", {', '.join(args.exclude_ops)} left in fp32"
    if args.model == "card":
        print(add_metrics(args.out, args.results, args.reproduce))
    elif args.model == "embedding":
        source = args.source or MODELS / "dlib_resnet_v1.onnx"
        inputs = embedding_inputs(source, celeba_faces(count=args.count))
        quantize(source, args.out, inputs, 16, args.format, args.calibration, tuple(args.exclude_ops))
        print(write_card(source, args.out, how, f"{len(inputs)} celeba299 aligned faces (at most two per identity)"))
    elif args.model == "expression":
        source = args.source or MODELS / "expression.onnx"
        inputs = expression_inputs(count=args.count)
        quantize(source, args.out, inputs, 64, args.format, args.calibration, tuple(args.exclude_ops))
        print(write_card(source, args.out, how, f"{len(inputs)} FER2013 Training images"))
    else:
        rnet, onet = mtcnn_inputs(celeba_faces(count=args.count))
        for name, inputs in (("rnet", rnet), ("onet", onet)):
            source = (args.source or MODELS) / f"mtcnn_{name}.onnx"
            out = quantize(
                source,
                args.out / f"mtcnn_{name}_int8.onnx",
                inputs,
                64,
                args.format,
                args.calibration,
                tuple(args.exclude_ops),
            )
            print(out, f"{len(inputs)} crops")


if __name__ == "__main__":
    main()
