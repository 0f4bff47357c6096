"""`stra-face attention` (or `python -m stra_face.training.fer.attention`): mode-attention maps of a \
trained StRA model (Fig. 3 / Fig. 4).

Only argument parsing lives here (torch-free, so that --help answers at once); the work is attention_maps.py's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stra_face.training.fer.config import DEFAULT_DATA


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stra-face attention", description=__doc__.splitlines()[0].partition(": ")[2])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a FER checkpoint of an StRA model")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--split", default="PublicTest")
    parser.add_argument(
        "--faces-per-class",
        type=int,
        default=1,
        help="faces per expression in the per-face figure (first of each class in the split)",
    )
    parser.add_argument(
        "--limit", type=int, default=0, help="a seeded random N faces of the split for the distribution figure (0: all)"
    )
    parser.add_argument("--out", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from stra_face.training.fer.attention_maps import run

    run(args)


if __name__ == "__main__":
    main()
