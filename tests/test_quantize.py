"""Static int8 quantisation (stra_face.training.export.quantize) on real calibration data."""

from __future__ import annotations

import json

import numpy as np
import onnx

from tests.conftest import SHARED_DATA, need


def test_rnet_quantised_on_real_crops_keeps_its_answers(tmp_path):
    """R-Net quantised (QOperator, per channel) on the crops the cascade makes on celeba299 photos: the graph
    runs int8 convolutions, weighs a third of the float file, and on other real crops its face probability
    stays close to the float model's (mean difference under 0.02; the int8 softmax itself moves in steps
    of 1/256) and its decision (> 0.7) the same on nearly every crop; its card
    says what it was made from."""
    from stra_face.training.export.quantize import MODELS, celeba_faces, mtcnn_inputs, quantize, write_card
    from stra_face.vision.cards import ModelCard, sha256_file
    from stra_face.vision.detect import FaceDetector

    folder = need(SHARED_DATA / "celeba299" / "aligned112")
    calibration, _ = mtcnn_inputs(celeba_faces(folder, count=24, seed=0), rnet_count=512, onet_count=8)
    held_out, _ = mtcnn_inputs(celeba_faces(folder, count=24, seed=1), rnet_count=512, onet_count=8)
    source = MODELS / "mtcnn_rnet.onnx"
    out = quantize(source, tmp_path / "rnet_int8.onnx", calibration, quant_format="qoperator")
    card = ModelCard.read(write_card(source, out, "test", "24 celeba299 photos"))
    assert card.sha256 == sha256_file(out) and card.precision == "int8"
    assert card.extra["quantization"]["source_sha256"] == sha256_file(source)
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert "QLinearConv" in ops and out.stat().st_size < source.stat().st_size / 2.5

    detector = FaceDetector()
    float_scores = detector.run_rnet(held_out)[:, 5]
    detector.rnet = type(detector.rnet)(out, ["CPUExecutionProvider"])
    int8_scores = detector.run_rnet(held_out)[:, 5]
    print(
        f"mean |difference| {np.abs(int8_scores - float_scores).mean():.4f}, "
        f"same decision {np.mean((int8_scores > 0.7) == (float_scores > 0.7)):.4f}"
    )
    assert np.abs(int8_scores - float_scores).mean() < 0.02
    assert np.mean((int8_scores > 0.7) == (float_scores > 0.7)) > 0.97
    json.dumps(card.to_dict())  # the card stays JSON


def test_expression_calibration_reads_the_training_split_only():
    """The expression model is calibrated on FER2013 Training images (never PublicTest / PrivateTest), as
    the model reads them."""
    from stra_face.training.export.quantize import expression_inputs
    from stra_face.training.fer.data import load_fer2013

    path = need(SHARED_DATA / "fer2013" / "fer2013_jpg.npz")
    inputs = expression_inputs(path, count=64, seed=0)
    assert inputs.shape == (64, 1, 48, 48) and inputs.min() >= -1 and inputs.max() <= 1
    data = load_fer2013(path)
    pixels = np.round(inputs[:, 0] * 127.5 + 127.5).astype(np.uint8)
    flat = data.images.reshape(len(data.images), -1)
    for image in pixels[:8]:
        rows = np.flatnonzero(np.all(flat == image.reshape(-1), axis=1))
        assert len(rows) and "Training" in set(data.usage[rows])
