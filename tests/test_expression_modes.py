"""StRA mode maps as a second output of the expression model, and over the API (`?modes=true`)."""

from __future__ import annotations

import asyncio
import base64

import cv2
import numpy as np
import pytest
import torch

from conftest import with_batchnorm_statistics
from stra_face import models
from stra_face.training.export.onnx_export import check_parity, export_onnx, onnx_session
from stra_face.vision.inference import ExpressionModel, MicroBatcher, ModesUnavailable
from test_service_api import OBAMA, TWO_PEOPLE, assert_error, photo, upload

SHAPE = (1, 48, 48)


@pytest.fixture(scope="module")
def stra_expression_model(tmp_path_factory):
    """A random-weight MobileNetV2-StRA expression model exported with its `modes` output, as `ship` does."""
    torch.manual_seed(0)
    network = with_batchnorm_statistics(
        models.create_model("mobilenetv2_100_stra", num_classes=7, in_chans=1, last_stride=1), SHAPE
    )
    exported = models.WithModes(network).eval()
    path = export_onnx(
        exported, tmp_path_factory.mktemp("modes") / "expression_stra.onnx", SHAPE, output_names=("output", "modes")
    )
    return exported, path


def test_export_has_both_outputs_and_parity_covers_the_modes(stra_expression_model):
    exported, path = stra_expression_model
    session = onnx_session(path)
    assert [o.name for o in session.get_outputs()] == ["output", "modes"]
    assert check_parity(exported, path, SHAPE) <= 1e-4
    x = np.random.default_rng(0).uniform(-1, 1, (3, *SHAPE)).astype(np.float32)
    logits, maps = session.run(None, {"input": x})
    with torch.no_grad():
        expected_logits, expected_maps = exported(torch.from_numpy(x))
    np.testing.assert_allclose(maps, expected_maps.numpy(), atol=1e-4)
    np.testing.assert_allclose(logits, expected_logits.numpy(), atol=1e-4)
    # The maps are the last mode-attention block's r_ig, not some other tensor of that shape.
    assert torch.equal(expected_maps, models.last_mode_attention(exported.model).coefficients)


def test_a_model_without_mode_attention_cannot_be_wrapped():
    with pytest.raises(ValueError, match="no mode attention"):
        models.WithModes(models.create_model("mobilenetv2_100", num_classes=7, in_chans=1))


def test_expression_model_returns_mode_maps_only_when_asked(stra_expression_model):
    _, path = stra_expression_model
    model = ExpressionModel(path, ["CPUExecutionProvider"])
    crops = np.random.default_rng(1).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    assert model.has_modes
    probabilities, maps = model.predict(crops, flip=False, modes=True)
    assert probabilities.shape == (4, 7) and maps.shape[:2] == (4, 8) and maps.shape[2:] == (3, 3)
    assert maps.dtype == np.float32 and 0.0 <= maps.min() and maps.max() <= 1.0
    assert np.abs(maps[0] - maps[1]).max() > 1e-3, "different crops must give different maps"
    np.testing.assert_allclose(probabilities, model.probabilities(crops), atol=1e-6)
    assert model.predict(crops, flip=False)[1] is None
    # With mirror TTA the maps stay those of the unmirrored crops.
    flipped_probabilities, flipped_maps = model.predict(crops, flip=True, modes=True)
    np.testing.assert_allclose(flipped_maps, maps, atol=1e-5)
    np.testing.assert_allclose(flipped_probabilities, model.probabilities(crops, flip=True), atol=1e-6)


def test_a_model_without_a_modes_output_refuses_modes(random_onnx_models):
    model = ExpressionModel(random_onnx_models["expression"], ["CPUExecutionProvider"])
    assert not model.has_modes
    with pytest.raises(ModesUnavailable, match="no 'modes' output"):
        model.predict(np.zeros((1, 48, 48), np.uint8), modes=True)


def test_batcher_keeps_requests_with_and_without_modes_apart_and_aligned():
    calls = []

    def predict(items: np.ndarray, flip: bool, modes: bool):
        calls.append((len(items), modes))
        return items[:, :1] * 10, (items[:, None] if modes else None)

    async def scenario():
        batcher = MicroBatcher(predict, max_size=64, max_wait_ms=20, queue_size=1000)
        await batcher.start()
        requests = [np.full((1 + i % 2, 3), float(i)) for i in range(12)]
        results = await asyncio.gather(*(batcher.submit(r, False, i % 3 == 0) for i, r in enumerate(requests)))
        await batcher.stop()
        return requests, results

    requests, results = asyncio.run(scenario())
    for i, (request, (scores, maps)) in enumerate(zip(requests, results)):
        np.testing.assert_array_equal(scores, request[:, :1] * 10)
        if i % 3 == 0:
            np.testing.assert_array_equal(maps, request[:, None])
        else:
            assert maps is None
    assert all(size > 0 for size, _ in calls) and len(calls) < len(requests)


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def stra_client(make_client, stra_expression_model):
    return make_client(expression_model=stra_expression_model[1])


@pytest.mark.parametrize("route", ["/v1/expression", "/v1/analyze"])
def test_modes_per_face_over_the_api(stra_client, route):
    plain = stra_client.post(route, **upload(photo(TWO_PEOPLE))).json()
    assert len(plain["faces"]) == 2 and all("modes" not in face for face in plain["faces"]), (
        "no modes payload unless asked"
    )
    body = stra_client.post(route, params={"modes": "true"}, **upload(photo(TWO_PEOPLE))).json()
    faces = body["faces"]
    assert len(faces) == 2
    maps = []
    for face, plain_face in zip(faces, plain["faces"]):
        modes = face["modes"]
        assert modes["groups"] == 8 and modes["grid"] == [3, 3] and modes["cell_pixels"] == [16.0, 16.0]
        grid = np.asarray(modes["maps"])
        assert grid.shape == (8, 3, 3) and 0.0 <= grid.min() and grid.max() <= 1.0
        assert modes.get("overlay_png") is None
        # Same model call, same answer: asking for modes changes nothing else.
        assert face["expression"]["dominant"] == plain_face["expression"]["dominant"]
        maps.append(grid)
    assert np.abs(maps[0] - maps[1]).max() > 1e-3, "two different faces gave identical mode maps"


def test_modes_overlay_is_a_png_row_of_crop_and_maps(stra_client):
    face = stra_client.post("/v1/expression", params={"modes_overlay": "true"}, **upload(photo(OBAMA))).json()["faces"][
        0
    ]
    png = np.frombuffer(base64.b64decode(face["modes"]["overlay_png"]), np.uint8)
    image = cv2.imdecode(png, cv2.IMREAD_COLOR)
    assert image.shape == (96, 96 * 9, 3)  # the crop, then 8 modes, each 48 px at 2x
    assert len(face["modes"]["maps"]) == 8


@pytest.mark.parametrize("params", [{"modes": "true"}, {"modes_overlay": "true"}])
@pytest.mark.parametrize("route", ["/v1/expression", "/v1/analyze"])
def test_modes_from_a_model_without_them_is_a_clear_422(client, route, params):
    body = assert_error(client.post(route, params=params, **upload(photo(OBAMA))), 422, "modes_unavailable")
    assert "no StRA mode output" in body["error"]["message"]
    assert client.post(route, **upload(photo(OBAMA))).status_code == 200


def test_modes_are_documented_in_openapi(client):
    schema = client.get("/openapi.json").json()
    for route in ("/v1/expression", "/v1/analyze"):
        parameters = {p["name"] for p in schema["paths"][route]["post"]["parameters"]}
        assert {"modes", "modes_overlay"} <= parameters
    components = schema["components"]["schemas"]
    assert {"groups", "grid", "cell_pixels", "maps", "overlay_png"} <= set(components["ExpressionModes"]["properties"])
    assert "modes" in components["ExpressionFace"]["properties"] and "modes" in components["AnalyzedFace"]["properties"]
