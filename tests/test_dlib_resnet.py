"""dlib's face descriptor ported to PyTorch: the reader follows dlib's serialization, and the port
computes what dlib-bin computes on real face chips (the `teacher` extra; skipped without it)."""

from __future__ import annotations

import importlib.util
import json
import struct

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, need
from stra_face.models import create_model, list_models
from stra_face.models.dlib_resnet import (
    DLIB_CHIP_PADDING,
    DLIB_CHIP_SIZE,
    DlibFaceResNet,
    _Reader,
    add_padded,
    dlib_model_file,
)

HAVE_TEACHER = all(importlib.util.find_spec(name) for name in ("dlib", "face_recognition_models"))
needs_teacher = pytest.mark.skipif(
    not HAVE_TEACHER, reason="needs the `teacher` extra (dlib-bin, face_recognition_models)"
)
LFW_ALIGNED = SHARED_DATA / "lfw" / "aligned112"
PARITY_CHIPS = 100


def test_reader_decodes_dlib_integers_floats_and_tensors():
    # dlib's pack_int: control byte (size | 0x80 when negative), then little-endian bytes.
    # float_details: mantissa and exponent as two such integers. Tensor: version 2, 4 dims, raw float32.
    data = bytes([0x01, 0x2A, 0x82, 0x34, 0x12, 0x01, 0x03, 0x81, 0x01])  # 42, -0x1234, 3 * 2**-1
    data += bytes([0x01, 0x05]) + b"con_6" + b"1"
    data += bytes([0x01, 0x02, 0x01, 0x01, 0x01, 0x02, 0x01, 0x01, 0x01, 0x01]) + struct.pack("<2f", 1.5, -2.25)
    reader = _Reader(data)
    assert reader.int() == 42 and reader.int() == -0x1234
    assert reader.float() == 1.5
    assert reader.string() == "con_6" and reader.bool() is True
    np.testing.assert_array_equal(reader.tensor(), np.array([1.5, -2.25], np.float32).reshape(1, 2, 1, 1))
    assert reader.pos == len(data)


def test_add_padded_is_dlibs_add_prev_on_mismatched_shapes():
    a, b = torch.ones(1, 2, 4, 4), torch.full((1, 3, 3, 3), 2.0)
    out = add_padded(a, b)
    assert out.shape == (1, 3, 4, 4)
    assert out[0, 0, 0, 0] == 3 and out[0, 0, 3, 3] == 1 and out[0, 2, 0, 0] == 2 and out[0, 2, 3, 3] == 0


def test_registered_as_a_fixed_network():
    assert "dlib_resnet_v1" in list_models(fixed=True) and "dlib_resnet_v1" not in list_models()
    model = create_model("dlib_resnet_v1").eval()
    assert isinstance(model, DlibFaceResNet)
    with torch.no_grad():
        # The spatial sizes of anet_type: 150 -> 72 -> 35 -> 17 -> 8 -> 4 -> 2, then the 128-d fc.
        assert model(torch.rand(2, 3, DLIB_CHIP_SIZE, DLIB_CHIP_SIZE) * 255).shape == (2, 128)
    with pytest.raises(ValueError, match="fixed 128-d head"):
        create_model("dlib_resnet_v1", num_classes=7)


@pytest.fixture(scope="module")
def dlib_chips_and_descriptors():
    """PARITY_CHIPS real face chips cut by dlib itself (5-point predictor + get_face_chip) from LFW
    crops, and dlib-bin's descriptors for them."""
    import dlib

    from stra_face.training.face.teacher import read_rgb

    paths = sorted(need(LFW_ALIGNED).glob("*/*.jpg"))[:PARITY_CHIPS]
    predictor = dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks.dat")))
    encoder = dlib.face_recognition_model_v1(str(dlib_model_file()))
    chips = []
    for path in paths:
        image = read_rgb(path)
        shape = predictor(image, dlib.rectangle(0, 0, image.shape[1] - 1, image.shape[0] - 1))
        chips.append(dlib.get_face_chip(image, shape, size=DLIB_CHIP_SIZE, padding=DLIB_CHIP_PADDING))
    descriptors = np.array([np.asarray(d) for d in encoder.compute_face_descriptor(chips)], np.float64)
    return np.stack(chips), descriptors


@needs_teacher
@pytest.mark.slow
def test_pytorch_port_equals_dlib_on_real_face_chips(dlib_chips_and_descriptors):
    from stra_face.models.dlib_resnet import load_dlib_resnet

    chips, expected = dlib_chips_and_descriptors
    assert len(chips) >= 100
    model = create_model("dlib_resnet_v1", pretrained=True)
    with torch.inference_mode():
        got = torch.cat(
            [model(torch.from_numpy(part).permute(0, 3, 1, 2).float()) for part in np.array_split(chips, 4)]
        )
    error = np.abs(got.numpy() - expected).max()
    assert error <= 1e-4, f"max abs error {error:.2e} against dlib over {len(chips)} chips"
    # Not a constant map: the chips' descriptors differ as much as dlib's do.
    assert np.linalg.norm(expected[0] - expected[1:], axis=1).min() > 0.1
    assert isinstance(load_dlib_resnet(dlib_model_file()), DlibFaceResNet)


@needs_teacher
@pytest.mark.slow
def test_onnx_export_equals_dlib_on_real_face_chips(dlib_chips_and_descriptors, tmp_path):
    from stra_face.training.export.onnx_export import check_parity, export_onnx
    from stra_face.vision.inference import OnnxModel

    chips, expected = dlib_chips_and_descriptors
    model = create_model("dlib_resnet_v1", pretrained=True)
    path = export_onnx(model, tmp_path / "dlib.onnx", (3, DLIB_CHIP_SIZE, DLIB_CHIP_SIZE))
    check_parity(model, path, (3, DLIB_CHIP_SIZE, DLIB_CHIP_SIZE))
    got = OnnxModel(path, ["CPUExecutionProvider"]).run(chips.transpose(0, 3, 1, 2).astype(np.float32))
    error = np.abs(got - expected).max()
    assert error <= 1e-4, f"ONNX: max abs error {error:.2e} against dlib over {len(chips)} chips"


@needs_teacher
@pytest.mark.slow
def test_port_exports_benchmarks_calibrates_and_cards_in_one_step(tmp_path):
    """`dlib_port.port` as the command runs it, on a small synthetic benchmark: the card is written
    once, complete, and the service reads from it which face the file wants."""
    import pickle

    import cv2

    from stra_face.training.eval.verification import PairSources
    from stra_face.training.face.dlib_port import port
    from stra_face.vision.cards import ModelCard, sha256_file
    from stra_face.vision.inference import EmbeddingModel

    rng = np.random.default_rng(0)
    faces = [cv2.imencode(".png", rng.integers(0, 256, (112, 112, 3), np.uint8))[1].tobytes() for _ in range(40)]
    (tmp_path / "tiny.bin").write_bytes(pickle.dumps((faces, [i % 2 == 0 for i in range(20)])))
    out, thresholds = tmp_path / "dlib.onnx", tmp_path / "thresholds.json"
    card = port(
        out, PairSources(bins=[tmp_path / "tiny.bin"]), tmp_path / "bench", thresholds, fp16=False, calibrate_on="tiny"
    )
    assert ModelCard.read(out) == card
    assert card.sha256 == sha256_file(out) and card.input_kind == "dlib_chip_150" and card.embedding_dim == 128
    assert set(card.metrics) == {"tiny"} and card.metrics["tiny"]["pairs"] == 20 and card.parity_max_abs_error < 1e-3
    assert card.reproduce.startswith("python -m stra_face.training.face.dlib_port --out ") and card.code_revision
    assert card.sha256 in json.loads(thresholds.read_text())
    loaded = EmbeddingModel(out, ["CPUExecutionProvider"])
    assert loaded.input_kind.name == "dlib_chip_150" and loaded.dim == 128 and loaded.name == "dlib_resnet_v1"
