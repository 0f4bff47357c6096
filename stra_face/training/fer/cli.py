"""`python -m stra_face.training.fer <command>` (and `stra-face fer <command>`): train, gpu-run, eval, ship.

Only argument parsing lives here (torch-free, so that --help answers at once); the work is done by trainer.py (train, run_eval, ship) and gpu_run.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stra_face.training.config import parse_config
from stra_face.training.fer.config import BENCHMARKS, DEFAULT_DATA, SPLITS, FerConfig

TTA_MODES = ["none", "flip", "tencrop"]


def _add_eval_arguments(parser: argparse.ArgumentParser, default_data: str) -> None:
    parser.add_argument("--data", default=default_data, help="FER2013 in any layout (folder, .zip, .csv, .npz)")
    parser.add_argument("--ferplus-votes", help="FER+ votes aligned to --data row by row: ferplus_votes.npz, or FER+'s fer2013new.csv "
                        "for the original fer2013.csv (default: ferplus_votes.npz next to --data)")
    parser.add_argument("--plots", help="folder for confusion-matrix PNGs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stra_face.training.fer", description="FER2013 / FER+ expression classifier")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="train (options: python -m stra_face.training.fer train --help)")
    commands.add_parser("gpu-run", help="StRA + baseline trained, evaluated, StRA shipped, one folder (python -m stra_face.training.fer gpu-run --help)")
    evaluation = commands.add_parser("eval", help="FER2013 and FER+ accuracy per split and class, confusion-matrix PNGs")
    source = evaluation.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path)
    source.add_argument("--onnx", type=Path)
    _add_eval_arguments(evaluation, DEFAULT_DATA)
    evaluation.add_argument("--splits", nargs="+", default=["PublicTest", "PrivateTest"], choices=SPLITS)
    evaluation.add_argument("--tta", nargs="+", default=["none", "flip"], choices=TTA_MODES)
    evaluation.add_argument("--benchmarks", nargs="+", choices=list(BENCHMARKS), help="default: fer2013, and ferplus when its votes are found")
    evaluation.add_argument("--json", help="write the reports as JSON (reused, and completed, when run again on the same file)")
    ship = commands.add_parser("ship", help="export a checkpoint to ONNX, re-evaluate it, write its model card")
    ship.add_argument("--checkpoint", type=Path, required=True)
    ship.add_argument("--out", type=Path, default=Path("stra_face/assets/models/expression.onnx"))
    _add_eval_arguments(ship, DEFAULT_DATA)
    ship.add_argument("--fp16", action="store_true")
    ship.add_argument("--tta", nargs="+", default=TTA_MODES, choices=TTA_MODES, help="TTA modes measured for the card")
    ship.add_argument("--json", help="also write the full reports (with confusion matrices) as JSON; reused when the export is byte-identical")
    provenance = ship.add_argument_group("provenance", "for the card, when the checkpoint was trained elsewhere")
    provenance.add_argument("--code-revision", help="git revision of the code that trained it")
    provenance.add_argument("--hardware", help="e.g. 'one NVIDIA H200, torch 2.11, bf16 autocast'")
    provenance.add_argument("--trained-with", help="the exact training command")
    provenance.add_argument("--source", help="where the checkpoint comes from")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train":
        config = parse_config(FerConfig, argv[1:], "train a FER2013 / FER+ expression classifier")
        from stra_face.training.fer.trainer import train

        train(config)
        return
    if argv and argv[0] == "gpu-run":
        from stra_face.training.fer import gpu_run

        gpu_run.main(argv[1:])
        return
    args = build_parser().parse_args(argv)
    from stra_face.training.fer import trainer

    if args.command == "eval":
        trainer.run_eval(checkpoint=args.checkpoint, onnx=args.onnx, data=args.data, splits=args.splits, tta=args.tta, benchmarks=args.benchmarks,
                         ferplus_votes=args.ferplus_votes, plots=args.plots, json_path=args.json)
    elif args.command == "ship":
        provenance = {"code_revision": args.code_revision, "hardware": args.hardware, "trained_with": args.trained_with, "source": args.source}
        trainer.ship(args.checkpoint, args.out, args.data, fp16=args.fp16, tta=args.tta, ferplus_votes=args.ferplus_votes,
                     plots=args.plots, json_path=args.json, provenance=provenance)


if __name__ == "__main__":
    main()
