"""`stra-face flops`: parameters and GMACs of every registered model (the paper's Table 1).

Only argument parsing lives here (torch-free, so that --help answers at once); the counting is flops.py's.
"""

from __future__ import annotations

import argparse

DEFAULT_SIZES = ("256x128", "112x112", "48x48")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stra-face flops", description=__doc__.splitlines()[0].partition(": ")[2])
    parser.add_argument("--models", nargs="+", help="registered model names (default: all of them)")
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="HxW input sizes")
    parser.add_argument("--last-stride", type=int, default=1, choices=(1, 2), help="1 as in the paper's Table 1")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    from stra_face.models.flops import complexity_table, format_table
    from stra_face.models.registry import list_models

    unknown = sorted(set(args.models or ()) - set(list_models()))
    if unknown:  # checked after parsing: the registry needs torch, --help must not
        parser.error(f"unknown model(s) {', '.join(unknown)}; one of {', '.join(list_models())}")
    rows = complexity_table(args.models or list_models(), args.sizes, args.last_stride)
    print(f"Backbone params and GMACs (multiply-adds), last_stride={args.last_stride}, no classifier head")
    print(format_table(rows, args.sizes))


if __name__ == "__main__":
    main()
