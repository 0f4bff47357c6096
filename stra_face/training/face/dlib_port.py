"""Ship dlib's face descriptor as a model of ours: export the PyTorch port (`stra_face.models.dlib_resnet`) to ONNX
with the parity-checked export, check it against dlib-bin on real face chips, benchmark the exported
file (CFP-FF/FP, LFW), calibrate its thresholds on CFP-FP and write its card.

    python -m stra_face.training.face.dlib_port --out stra_face/assets/models/dlib_resnet_v1.onnx --fp16 \\
        --cfp ../shared/data/cfp --lfw ../shared/data/lfw --report runs/bench/dlib_resnet_v1

Needs the `teacher` extra (dlib-bin for the real-chip check, face_recognition_models for the weights).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
from pathlib import Path

import numpy as np

from stra_face.models import create_model
from stra_face.models.dlib_resnet import DLIB_CHIP_PADDING, DLIB_CHIP_SIZE, DLIB_RESNET_FILE, dlib_model_file
from stra_face.training.eval.embedders import onnx_embedder
from stra_face.training.eval.verification import Calibration, PairSources, benchmark
from stra_face.training.provenance import code_revision
from stra_face.vision.cards import ModelCard, file_facts

INPUT_SHAPE = (3, DLIB_CHIP_SIZE, DLIB_CHIP_SIZE)


def dlib_chips(images: list[Path]) -> np.ndarray:
    """(N, 150, 150, 3) chips cut by dlib itself: its 5-point predictor on the whole image, get_face_chip."""
    import dlib

    from stra_face.training.eval.embedders import load_rgb

    predictor = dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks.dat")))
    chips = []
    for path in images:
        image = load_rgb(path)
        shape = predictor(image, dlib.rectangle(0, 0, image.shape[1] - 1, image.shape[0] - 1))
        chips.append(dlib.get_face_chip(image, shape, size=DLIB_CHIP_SIZE, padding=DLIB_CHIP_PADDING))
    return np.stack(chips)


def parity_with_dlib(onnx_path: Path, images: list[Path]) -> dict:
    """The exported file against dlib-bin's compute_face_descriptor on the same chips, as the service
    runs it (onnxruntime CPU): max abs descriptor error and max change of a pairwise distance."""
    import dlib

    from stra_face.vision.inference import OnnxModel

    chips = dlib_chips(images)
    encoder = dlib.face_recognition_model_v1(str(dlib_model_file()))
    expected = np.array([np.asarray(d) for d in encoder.compute_face_descriptor(list(chips))])
    got = OnnxModel(onnx_path, ["CPUExecutionProvider"]).run(chips.transpose(0, 3, 1, 2).astype(np.float32))

    def distances(d: np.ndarray) -> np.ndarray:
        return np.linalg.norm(d[:, None] - d[None], axis=2)

    return {
        "chips": len(chips),
        "source": f"dlib chips of the first {len(images)} LFW aligned112 images (sorted paths)",
        "max_abs_error": float(np.abs(got - expected).max()),
        "max_pairwise_distance_change": float(np.abs(distances(got) - distances(expected)).max()),
    }


def port(
    out: Path,
    sources: PairSources,
    report: Path,
    thresholds_file: Path,
    fp16: bool = True,
    parity_images: list[Path] | None = None,
    calibrate_on: str = "cfp_fp",
) -> ModelCard:
    """Export the port, check it (random inputs; dlib itself on `parity_images`), benchmark the
    exported file, calibrate its thresholds on `calibrate_on`'s pairs and write its card beside it, once."""
    from stra_face.training.export.onnx_export import check_parity, export_onnx

    model = create_model("dlib_resnet_v1", pretrained=True)
    export_onnx(model, out, INPUT_SHAPE, fp16=fp16)
    card = ModelCard(
        name="dlib_resnet_v1",
        input_kind="dlib_chip_150",
        embedding_dim=128,
        task="face embedding (128-d, L2-normalise; cosine similarity)",
        **file_facts(out),
        precision="fp16" if fp16 else "fp32",
        input="(N, 3, 150, 150) float32 RGB 0..255 of dlib's face chip (padding 0.25), cut from the 5 MTCNN "
        "landmarks through stra_face.vision.align.DLIB_CHIP_TEMPLATE; the graph applies dlib's (x - mean) / 256",
        output="(N, 128) dlib face descriptor (not normalised)",
        parity_max_abs_error=check_parity(model, out, INPUT_SHAPE, fp16=fp16),
        extra={"parity_with_dlib": parity_with_dlib(out, parity_images) if parity_images else None},
    )
    print(f"parity: random inputs {card.parity_max_abs_error:.2e}; against dlib {card.extra['parity_with_dlib']}")
    calibration = Calibration(calibrate_on, out, thresholds_file)
    results = benchmark(
        onnx_embedder(out, ["CPUExecutionProvider"], card=card),
        "dlib_resnet_v1 (port, ONNX)",
        sources.load(),
        report,
        calibration=calibration,
    )
    card.model = {"name": "dlib_resnet_v1", "module": "stra_face.models.dlib_resnet.DlibFaceResNet"}
    card.recipe = (
        f"dlib's published weights ({DLIB_RESNET_FILE} from the face_recognition_models package), CC0, "
        "ported by stra_face.models.dlib_resnet (weights read by its own reader of dlib's serialization); "
        "no training here"
    )
    card.data = {
        "trained_on": "by Davis King (dlib), on about 3 million faces (FaceScrub, the VGG face dataset and images "
        "scraped from the web, per the dlib-models README); not trained or tuned here",
        "benchmark": f"CFP ({sources.cfp})" + (f", LFW ({sources.lfw_pairs.parent})" if sources.lfw_pairs else ""),
    }
    card.code_revision = code_revision()
    card.hardware = f"exported and benchmarked on CPU ({platform.machine()}, onnxruntime CPU provider)"
    card.metrics = {name: {k: v for k, v in dataclasses.asdict(r).items() if k != "roc"} for name, r in results.items()}
    card.thresholds = (
        f"{thresholds_file.name}, calibrated on {calibrate_on.upper().replace('_', '-')} impostor pairs "
        "(single embedding, no mirror)"
    )
    card.limitations = (
        "chips are cut from MTCNN's 5 landmarks through one fixed template, where dlib's own pipeline re-locates its "
        "landmarks per face (cost: `python -m stra_face.training.face.chip_template compare`); the benchmark crops "
        "(112x112) hold less context than the chip wants (black borders); thresholds calibrated on CFP-FP impostors "
        "(frontal vs profile) are strict for frontal photos; no fairness audit has been run"
    )
    card.reproduce = (
        f"python -m stra_face.training.face.dlib_port --out {out}"
        + (" --fp16" if fp16 else "")
        + f" --cfp {sources.cfp}"
        + (f" --lfw {sources.lfw_pairs.parent}" if sources.lfw_pairs else "")
        + f" --report {report} --thresholds-file {thresholds_file}"
    )
    card.write(out)
    print(f"{out}: {card.size_bytes / 2**20:.1f} MiB, sha256 {card.sha256}")
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stra_face.training.face.dlib_port", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fp16", action="store_true", help="fp16 weights (float32 inputs/outputs)")
    parser.add_argument("--cfp", type=Path, required=True, help="CFP root (Protocol/, aligned112/)")
    parser.add_argument("--lfw", type=Path, help="LFW root (pairs.txt, aligned112/)")
    parser.add_argument("--report", type=Path, default=Path("runs/bench/dlib_resnet_v1"))
    parser.add_argument("--thresholds-file", type=Path, default=Path("stra_face/assets/models/thresholds.json"))
    parser.add_argument("--parity-chips", type=int, default=100, help="LFW images checked against dlib itself")
    args = parser.parse_args(argv)

    lfw_images = sorted((args.lfw or args.cfp.parent / "lfw").joinpath("aligned112").glob("*/*.jpg"))[
        : args.parity_chips
    ]
    port(args.out, PairSources.from_roots(args.cfp, args.lfw), args.report, args.thresholds_file, args.fp16, lfw_images)


if __name__ == "__main__":
    main()
