"""`stra-face eval` (or `python -m stra_face.training.eval`): 10-fold face-verification accuracy (LFW / CFP / .bin),
ROC and threshold calibration of an exported model, a checkpoint or the teacher.

Only argument parsing lives here (torch-free, so that --help answers at once); the work is verification.py's.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stra-face eval", description=__doc__.splitlines()[0].partition(": ")[2])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--onnx", type=Path, help="an exported embedding model")
    source.add_argument("--checkpoint", type=Path, help="a checkpoint written by stra_face.training.face.trainer")
    source.add_argument("--teacher", choices=["dlib"], help="the distillation teacher (needs the `teacher` extra)")
    parser.add_argument("--bin", type=Path, nargs="*", default=[], help="InsightFace .bin files")
    parser.add_argument("--cfp", type=Path, help="CFP root (Protocol/ and aligned112/)")
    parser.add_argument("--cfp-images", default="aligned112", help="image folder under --cfp")
    parser.add_argument("--cfp-protocols", nargs="+", default=["FF", "FP"], choices=["FF", "FP"])
    parser.add_argument("--lfw-pairs", type=Path)
    parser.add_argument("--lfw-root", type=Path, help="LFW image folder or face pack (default: beside --lfw-pairs)")
    parser.add_argument(
        "--lfw-exclude",
        type=Path,
        help="people (one name a line) also left out in a second LFW row, "
        "`lfw_no_overlap`: those found in the training data (python -m stra_face.training.face.overlap)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/latest"), help="results.json and roc.png go here")
    parser.add_argument("--name", help="model name in the table row")
    parser.add_argument("--calibrate", help="benchmark whose pairs calibrate the thresholds, e.g. cfp_fp")
    parser.add_argument("--thresholds-file", type=Path, default=Path("stra_face/assets/models/thresholds.json"))
    return parser


def main(argv: list[str] | None = None) -> dict:
    """The benchmark's results per pair set (what it also writes to --out)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from stra_face.training.eval.verification import run

    return run(args, parser.error)


if __name__ == "__main__":
    main()
