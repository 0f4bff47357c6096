"""`python -m stra_face.training.fer <command>` (and `stra-face fer <command>`): train, gpu-run, eval, ship.

Only argument parsing lives here (torch-free, so that --help answers at once); the work is done by trainer.py
(train, run_eval, ship) and gpu_run.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stra_face.training.config import parse_config
from stra_face.training.fer.config import BENCHMARKS, DEFAULT_DATA, LABEL_SETS, SPLITS, FerConfig

TTA_MODES = ["none", "flip", "tencrop"]
GPU_RUN = """One command for a GPU lease: ResNet50-StRA and its same-recipe baseline, trained, evaluated and shipped.

    python -m stra_face.training.fer gpu-run --out runs/fer/gpu                      # 60 epochs each (the config's)
    python -m stra_face.training.fer gpu-run --out runs/fer/gpu --seeds 0 1          # two seeds each: the spread
    python -m stra_face.training.fer gpu-run --out /tmp/smoke --smoke                # CPU-sized check, ~1 minute
    python -m stra_face.training.fer gpu-run --data .carry/fer2013_jpg.npz --out /tmp/fer --bring-back $OUT   # on the \
device tool
    python -m stra_face.training.fer gpu-run --out runs/fer/gpu --labels ferplus fer2013 --ship-on ferplus   # both \
label sets
    python -m stra_face.training.fer gpu-run --out runs/fer/gpu -- --batch-size 256  # after `--`: FerConfig overrides

For every label set (--labels: FER+ vote distributions and/or the FER2013 labels) and seed, StRA
first (the model to ship), then the baseline: the same config file with only `model` (and `labels`)
changed. Each is evaluated on PublicTest and PrivateTest (none / flip / ten-crop) on both benchmarks,
FER2013 and FER+ (when the votes are found: ferplus_votes.npz next to --data); the StRA run that
is best on PublicTest (of the --ship-on benchmark) is exported to parity-checked fp16 ONNX with its
model card (`trainer.ship`). The output folder holds only small files:

    summary.json, summary.md    every accuracy, per run, plus mean and spread over seeds
    curves.png                  PublicTest accuracy and train loss per epoch, every run
    <model>[_ferplus]_seed<s>/  log.csv, config.json, eval.json, fp16 weights (<model>_fp16.pt)
    expression.onnx(.card.json) the shipped StRA model

Full checkpoints (fp32 weights + optimiser state, ~200 MB each) stay under `--work`. A device
lease returns at most 8 files of 16 MiB: `--bring-back $OUT` writes report.tar.gz (every small
file above) and the shipped run's fp16 checkpoint (~33 MB) as 15 MiB parts with JOIN.sh; rejoined,
`python -m stra_face.training.fer ship` turns it into the service's ONNX file (and re-measures it) on any CPU.
"""


def _add_eval_arguments(parser: argparse.ArgumentParser, default_data: str) -> None:
    parser.add_argument("--data", default=default_data, help="FER2013 in any layout (folder, .zip, .csv, .npz)")
    parser.add_argument(
        "--ferplus-votes",
        help="FER+ votes aligned to --data row by row: ferplus_votes.npz, or FER+'s fer2013new.csv "
        "for the original fer2013.csv (default: ferplus_votes.npz next to --data)",
    )
    parser.add_argument("--plots", help="folder for confusion-matrix PNGs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stra_face.training.fer", description="FER2013 / FER+ expression classifier"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="train (options: python -m stra_face.training.fer train --help)")
    commands.add_parser(
        "gpu-run",
        help=(
            "StRA + baseline trained, evaluated, StRA shipped, one folder "
            "(python -m stra_face.training.fer gpu-run --help)"
        ),
    )
    evaluation = commands.add_parser(
        "eval", help="FER2013 and FER+ accuracy per split and class, confusion-matrix PNGs"
    )
    source = evaluation.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path)
    source.add_argument("--onnx", type=Path)
    _add_eval_arguments(evaluation, DEFAULT_DATA)
    evaluation.add_argument("--splits", nargs="+", default=["PublicTest", "PrivateTest"], choices=SPLITS)
    evaluation.add_argument("--tta", nargs="+", default=["none", "flip"], choices=TTA_MODES)
    evaluation.add_argument(
        "--benchmarks",
        nargs="+",
        choices=list(BENCHMARKS),
        help="default: fer2013, and ferplus when its votes are found",
    )
    evaluation.add_argument(
        "--json", help="write the reports as JSON (reused, and completed, when run again on the same file)"
    )
    ship = commands.add_parser("ship", help="export a checkpoint to ONNX, re-evaluate it, write its model card")
    ship.add_argument("--checkpoint", type=Path, required=True)
    ship.add_argument("--out", type=Path, default=Path("stra_face/assets/models/expression.onnx"))
    _add_eval_arguments(ship, DEFAULT_DATA)
    ship.add_argument("--fp16", action="store_true")
    ship.add_argument("--tta", nargs="+", default=TTA_MODES, choices=TTA_MODES, help="TTA modes measured for the card")
    ship.add_argument(
        "--json",
        help="also write the full reports (with confusion matrices) as JSON; reused when the export is byte-identical",
    )
    provenance = ship.add_argument_group("provenance", "for the card, when the checkpoint was trained elsewhere")
    provenance.add_argument("--code-revision", help="git revision of the code that trained it")
    provenance.add_argument("--hardware", help="e.g. 'one NVIDIA H200, torch 2.11, bf16 autocast'")
    provenance.add_argument("--trained-with", help="the exact training command")
    provenance.add_argument("--source", help="where the checkpoint comes from")
    return parser


def gpu_run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stra_face.training.fer gpu-run",
        description=GPU_RUN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("stra_face/training/configs/fer_gpu_stra.toml"),
        help="the recipe both models share",
    )
    parser.add_argument(
        "--baseline", default="resnet50", help="the baseline model (the config's model is the StRA one)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--labels",
        nargs="+",
        choices=LABEL_SETS,
        help="label sets to train on, each with every model and seed (default: the config's)",
    )
    parser.add_argument(
        "--ship-on",
        choices=list(BENCHMARKS),
        default="fer2013",
        help="the benchmark whose PublicTest accuracy picks the StRA run to ship",
    )
    parser.add_argument(
        "--data",
        help="FER2013 in any layout (default: the config's); FER+ votes are read from ferplus_votes.npz next to it",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/fer/gpu"))
    parser.add_argument("--work", type=Path, help="full checkpoints (default: <out>/work)")
    parser.add_argument(
        "--bring-back",
        type=Path,
        help="also write report.tar.gz + the shipped fp16 checkpoint in 15 MiB parts here (device tool: $OUT)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a CPU-sized check: 48 images per split, 1 epoch of 2 steps"
    )
    return parser


def gpu_run(argv: list[str]) -> dict:
    """`gpu-run [options] [-- FerConfig overrides]`: parsed here, run by gpu_run.py; returns its summary."""
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    args = gpu_run_parser().parse_args(argv)
    command = "python -m stra_face.training.fer gpu-run " + " ".join(argv + (["--", *overrides] if overrides else []))
    from stra_face.training.fer.gpu_run import run

    return run(args, overrides, command)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train":
        config = parse_config(FerConfig, argv[1:], "train a FER2013 / FER+ expression classifier")
        from stra_face.training.fer.trainer import train

        train(config)
        return
    if argv and argv[0] == "gpu-run":
        gpu_run(argv[1:])
        return
    args = build_parser().parse_args(argv)
    from stra_face.training.fer import trainer

    if args.command == "eval":
        trainer.run_eval(
            checkpoint=args.checkpoint,
            onnx=args.onnx,
            data=args.data,
            splits=args.splits,
            tta=args.tta,
            benchmarks=args.benchmarks,
            ferplus_votes=args.ferplus_votes,
            plots=args.plots,
            json_path=args.json,
        )
    elif args.command == "ship":
        provenance = {
            "code_revision": args.code_revision,
            "hardware": args.hardware,
            "trained_with": args.trained_with,
            "source": args.source,
        }
        trainer.ship(
            args.checkpoint,
            args.out,
            args.data,
            fp16=args.fp16,
            tta=args.tta,
            ferplus_votes=args.ferplus_votes,
            plots=args.plots,
            json_path=args.json,
            provenance=provenance,
        )


if __name__ == "__main__":
    main()
