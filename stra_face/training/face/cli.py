"""`python -m stra_face.training.face <command>` (and `stra-face face <command>`): train, pipeline, prepare, modes,
ship.

Only argument parsing lives here (torch-free, so that --help answers at once); the work is done by trainer.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stra_face.training.config import parse_config
from stra_face.training.face.config import PIPELINE_MODELS, FaceConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stra_face.training.face", description="face-embedding training")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="train (options: python -m stra_face.training.face train --help)")
    commands.add_parser(
        "pipeline",
        help="train, benchmark, export, calibrate and card the StRA model and its baseline "
        "(options: python -m stra_face.training.face pipeline --help)",
    )
    prep = commands.add_parser("prepare", help="raw photos in identity folders -> aligned 112x112 faces")
    prep.add_argument("--src", type=Path, required=True)
    prep.add_argument("--dst", type=Path, required=True)
    prep.add_argument("--min-face-size", type=int, default=40)
    modes = commands.add_parser(
        "modes", help="mode-attention maps of an StRA face model on CFP faces (the paper's Figs. 3-4) as figures"
    )
    modes.add_argument("--checkpoint", type=Path, required=True)
    modes.add_argument("--cfp", type=Path, default=Path("../shared/data/cfp"))
    modes.add_argument("--out", type=Path, required=True, help="folder for <prefix>_per_face.png, _distribution.png")
    modes.add_argument("--people", type=int, default=4, help="CFP people in the per-face figure (frontal + profile)")
    modes.add_argument("--limit", type=int, default=1000, help="frontal CFP faces in the distribution figure")
    modes.add_argument("--prefix", default="face_modes")
    shipping = commands.add_parser(
        "ship", help="export a checkpoint, benchmark it on CFP and LFW, calibrate, write the card"
    )
    shipping.add_argument("--checkpoint", type=Path, required=True)
    shipping.add_argument(
        "--out",
        type=Path,
        help="the ONNX file (default: <run folder>.onnx beside the checkpoint's run folder, "
        "as `pipeline` lays it out; copy it into stra_face/assets/models to serve it)",
    )
    shipping.add_argument("--cfp", type=Path, default=Path("../shared/data/cfp"))
    shipping.add_argument("--lfw", type=Path, help="LFW root: pairs.txt and aligned112/ (or aligned112.npz)")
    shipping.add_argument(
        "--lfw-exclude", type=Path, help="LFW people seen in training (python -m stra_face.training.face.overlap)"
    )
    shipping.add_argument("--report", type=Path, help="benchmark results and ROC (default: bench/<model> beside --out)")
    shipping.add_argument(
        "--thresholds-file", type=Path, help="calibrated thresholds, added to (default: thresholds.json beside --out)"
    )
    shipping.add_argument("--fp16", action="store_true")
    return parser


def parse_pipeline(argv: list[str]) -> tuple[argparse.Namespace, FaceConfig]:
    """The pipeline's own options, then the recipe shared by every model (FaceConfig flags)."""
    parser = argparse.ArgumentParser(prog="python -m stra_face.training.face pipeline", add_help=False)
    # --out is required, but not for --help: that falls through to the recipe's parser, which prints the flags
    parser.add_argument("--out", type=Path, required="-h" not in argv and "--help" not in argv)
    parser.add_argument("--models", nargs="+", default=list(PIPELINE_MODELS))
    parser.add_argument("--cfp", type=Path, default=Path("../shared/data/cfp"))
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw"))
    parser.add_argument("--lfw-exclude", type=Path, default=Path("stra_face/training/data/lfw_training_overlap.txt"))
    parser.add_argument("--fp32", action="store_true", help="export fp32 (default: fp16)")
    own, rest = parser.parse_known_args(argv)
    base = parse_config(
        FaceConfig, rest, "recipe shared by every model (python -m stra_face.training.face train --help)"
    )
    return own, base


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train":
        config = parse_config(FaceConfig, argv[1:], "train a face-embedding model")
        from stra_face.training.face.trainer import train

        train(config)
        return
    if argv and argv[0] == "pipeline":
        own, base = parse_pipeline(argv[1:])
        from stra_face.training.face.trainer import pipeline

        pipeline(own, base)
        return
    args = build_parser().parse_args(argv)
    if args.command == "modes":
        from stra_face.training.face.mode_maps import run

        for row in run(args.checkpoint, args.cfp, args.out, args.people, args.limit, args.prefix):
            print(
                "mode {mode}: mean r {mean:.3f}, sd within a face {within_face_sd:.3f}, "
                "sd across faces {across_face_sd:.3f}".format(**row)
            )
        return
    from stra_face.training.eval.verification import PairSources
    from stra_face.training.face.trainer import prepare, ship

    if args.command == "prepare":
        prepare(args)
    else:
        out = args.out or args.checkpoint.parent.parent / f"{args.checkpoint.parent.name}.onnx"
        ship(
            args.checkpoint,
            out,
            PairSources.from_roots(args.cfp, args.lfw, args.lfw_exclude),
            args.report or out.parent / "bench" / out.stem,
            args.thresholds_file or out.parent / "thresholds.json",
            args.fp16,
        )


if __name__ == "__main__":
    main()
