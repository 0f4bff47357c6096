"""`stra-face export`: a registered model or checkpoint to ONNX, with a parity check against PyTorch.

Only argument parsing lives here (torch-free, so that --help answers at once); the work is onnx_export.py's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stra_face.training.export import DEFAULT_OPSET


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stra-face export", description=__doc__.splitlines()[0].partition(": ")[2])
    parser.add_argument("model", help="a registered model name (stra-face flops lists the backbones)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--input-shape", type=int, nargs=3, default=(3, 112, 112), metavar=("C", "H", "W"))
    parser.add_argument("--num-classes", type=int, default=0)
    parser.add_argument("--embedding-dim", type=int, default=0)
    parser.add_argument("--in-chans", type=int, default=None, help="default: C of --input-shape")
    parser.add_argument("--model-kwargs", type=json.loads, default={}, help="JSON, e.g. '{\"stem_stride\": 2}'")
    parser.add_argument("--weights", type=Path, help="a state_dict (.pt) to load; random weights otherwise")
    parser.add_argument("--fp16", action="store_true", help="fp16 weights and compute, float32 inputs/outputs")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    import torch

    from stra_face.models import create_model, list_models
    from stra_face.training.export.onnx_export import check_parity, export_onnx

    if args.model not in list_models(fixed=True):  # checked after parsing: the registry needs torch, --help must not
        parser.error(f"unknown model {args.model!r}; one of {', '.join(list_models(fixed=True))}")
    input_shape = tuple(args.input_shape)
    model = create_model(
        args.model,
        num_classes=args.num_classes,
        embedding_dim=args.embedding_dim,
        in_chans=args.in_chans or input_shape[0],
        **args.model_kwargs,
    )
    if args.weights:
        model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    path = export_onnx(model, args.out, input_shape, fp16=args.fp16, opset=args.opset)
    error = check_parity(model, path, input_shape, fp16=args.fp16)
    size_mb = path.stat().st_size / 2**20
    print(
        f"{path}: {size_mb:.1f} MiB, opset {args.opset}, {'fp16' if args.fp16 else 'fp32'}, max abs error {error:.2e}"
    )


if __name__ == "__main__":
    main()
