"""ONNX export of every registered model, checked against PyTorch eager in onnxruntime."""

import numpy as np
import onnx
import pytest
import torch

from stra_face.models import create_model, list_models
from stra_face.training.export.onnx_export import ParityError, check_parity, export_onnx, onnx_session


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_model_exports_with_parity(name, tmp_path):
    model = create_model(name, embedding_dim=64)
    path = export_onnx(model, tmp_path / f"{name}.onnx", (3, 64, 64))
    assert check_parity(model, path, (3, 64, 64)) <= 1e-4
    graph_input = onnx.load(str(path)).graph.input[0]
    assert graph_input.name == "input"
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis


@pytest.mark.slow
def test_fp16_export_keeps_float32_io_and_halves_the_file(tmp_path):
    model = create_model("resnet50_stra", num_classes=7, in_chans=1, stem_stride=2)
    fp32 = export_onnx(model, tmp_path / "fer32.onnx", (1, 48, 48))
    fp16 = export_onnx(model, tmp_path / "fer16.onnx", (1, 48, 48), fp16=True)
    assert check_parity(model, fp16, (1, 48, 48), fp16=True) < 1e-2
    assert fp16.stat().st_size < 0.6 * fp32.stat().st_size
    session = onnx_session(fp16)
    assert session.get_inputs()[0].type == "tensor(float)"
    out = session.run(["output"], {"input": np.zeros((5, 1, 48, 48), np.float32)})[0]
    assert out.shape == (5, 7) and out.dtype == np.float32


def test_parity_check_fails_loudly_on_a_different_model(tmp_path):
    model = create_model("mobilenetv2_100", num_classes=4)
    path = export_onnx(model, tmp_path / "m.onnx", (3, 32, 32))
    with torch.no_grad():
        model.classifier.fc.bias.add_(1e-3)  # PyTorch side now differs from the file by 1e-3
    with pytest.raises(ParityError, match="max abs error"):
        check_parity(model, path, (3, 32, 32))
