"""ONNX export with a numerical parity check against PyTorch eager.

    stra-face export resnet50_stra --embedding-dim 512 --input-shape 3 112 112 --out face.onnx
    stra-face export resnet50_stra --num-classes 7 --in-chans 1 --input-shape 1 48 48 --out fer.onnx --fp16
    stra-face export dlib_resnet_v1 --input-shape 3 150 150 --model-kwargs '{"pretrained": true}' --out dlib.onnx --fp16

The file has one input "input" (N, C, H, W) float32 with a dynamic batch axis and one output
"output" (a model returning a tuple, such as models.WithModes, gets one output per element,
named by `output_names`: "output", "modes"). fp16 files keep float32 inputs and outputs (casts inside the graph), so
callers never change. Parity runs the file in onnxruntime on random inputs and fails loudly when the
max abs error passes the tolerance: 1e-4 for fp32, and for fp16 1e-2 of the output's range.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from stra_face.training.export import DEFAULT_OPSET

FP32_TOLERANCE = 1e-4
FP16_RELATIVE_TOLERANCE = 1e-2


class ParityError(AssertionError):
    """The exported file disagrees with PyTorch beyond the tolerance."""


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    input_shape: tuple[int, int, int],
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    output_names: tuple[str, ...] = ("output",),
    dynamic_spatial: bool = False,
) -> Path:
    """Export `model` (eval mode) to a single self-contained ONNX file with a dynamic batch axis
    (and dynamic height/width with `dynamic_spatial`, for fully convolutional models)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.randn(2, *input_shape)
    batch = torch.export.Dim("batch", min=1, max=4096)
    axes = {0: batch}
    if dynamic_spatial:
        axes |= {
            2: torch.export.Dim("height", min=input_shape[1], max=8192),
            3: torch.export.Dim("width", min=input_shape[2], max=8192),
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export's notes on unbacked shapes are noise here
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["input"],
            output_names=list(output_names),
            dynamic_shapes=(axes,),
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    proto = program.model_proto
    onnx.checker.check_model(proto)
    if fp16:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        # The converter appends its input casts at the end of the node list, which onnx's
        # checker rejects as unsorted but onnxruntime sorts on load; parity is the real check.
        proto = convert_float_to_float16(proto, keep_io_types=True)
    onnx.save_model(proto, str(path), save_as_external_data=False)
    return path


def onnx_session(path: str | Path, providers: list[str] | None = None) -> ort.InferenceSession:
    """An onnxruntime session on the given providers (default: CPU, the reference for parity)."""
    return ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])


def check_parity(
    model: torch.nn.Module,
    path: str | Path,
    input_shape: tuple[int, int, int],
    fp16: bool = False,
    batch_sizes: tuple[int, ...] = (1, 3),
    seed: int = 0,
) -> float:
    """Max abs error between onnxruntime and PyTorch eager on random inputs, over every output of
    the file (a tuple-returning model is compared element by element); raises ParityError above tolerance."""
    model = model.eval()
    session = onnx_session(path)
    names = [output.name for output in session.get_outputs()]
    generator = torch.Generator().manual_seed(seed)
    worst, tolerance = 0.0, FP32_TOLERANCE
    for batch in batch_sizes:
        x = torch.randn(batch, *input_shape, generator=generator)
        with torch.no_grad():
            expected_outputs = model(x)
        expected_outputs = expected_outputs if isinstance(expected_outputs, tuple) else (expected_outputs,)
        if len(expected_outputs) != len(names):
            raise ParityError(f"{len(names)} outputs {names} in ONNX, {len(expected_outputs)} from PyTorch")
        for name, got, expected in zip(names, session.run(names, {"input": x.numpy()}), expected_outputs):
            expected = expected.numpy()
            if got.shape != expected.shape:
                raise ParityError(f"{name}: shape {got.shape} from ONNX, {expected.shape} from PyTorch")
            error = float(np.abs(got.astype(np.float64) - expected).max())
            if fp16:
                tolerance = FP16_RELATIVE_TOLERANCE * max(1.0, float(np.abs(expected).max()))
            worst = max(worst, error)
            if error > tolerance:
                raise ParityError(f"{path}: {name} max abs error {error:.3g} > {tolerance:.3g} at batch {batch}")
    return worst
