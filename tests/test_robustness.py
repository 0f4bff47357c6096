"""Decoding edge cases, bounds on every parameter, admission, the documented API (issue 11's reproductions)."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
from PIL import Image

from bad_inputs import encode, picture, png_16_bit
from conftest import FACES, need, write_thresholds
from stra_face.service.limits import Admission
from stra_face.service.middleware import json_depth
from stra_face.vision.decode import ImageError, decode_image
from stra_face.vision.guard import can_hold_a_face
from stra_face.vision.inference import MicroBatcher, Overloaded
from test_service_api import assert_error, photo, upload

OBAMA = "examples/obama-480p.jpg"


@pytest.fixture
def client(make_client):
    return make_client()


def test_16_bit_grey_is_scaled_not_clipped():
    decoded = decode_image(png_16_bit(True))
    expected = np.asarray(picture().convert("RGB"))[..., 0]  # png_16_bit stores channel 0 * 257
    assert np.abs(decoded[..., 0].astype(int) - expected).max() <= 1
    assert (decoded == 255).mean() < 0.05  # clipping put half the pixels at 255


def test_16_bit_photo_finds_the_face_the_8_bit_photo_finds(client):
    grey = Image.open(io.BytesIO(photo(OBAMA))).convert("L")
    sixteen = encode(Image.fromarray(np.asarray(grey).astype(np.uint16) * 257), "PNG")
    assert decode_image(sixteen).max() > 200 and (decode_image(sixteen) == 255).mean() < 0.05
    assert (
        len(client.post("/v1/detect", **upload(sixteen)).json()["faces"])
        == len(client.post("/v1/detect", **upload(encode(grey, "PNG"))).json()["faces"])
        == 1
    )


def test_transparency_is_composited_so_a_transparent_face_is_no_face(client):
    face = Image.open(io.BytesIO(photo(OBAMA))).convert("RGBA")
    face.putalpha(0)
    hidden = encode(face, "PNG")
    assert (decode_image(hidden) == 255).all()
    assert client.post("/v1/detect", **upload(hidden)).json()["faces"] == []
    assert_error(
        client.post("/v1/verify?threshold=0.5", files={"image1": ("a.png", hidden), "image2": ("b.jpg", photo(OBAMA))}),
        422,
        "no_face",
    )
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([10, 20, 30] * 256)
    assert (decode_image(encode(palette, "PNG", transparency=0)) == 255).all()


def test_cmyk_animated_and_exif_rotation():
    base = picture()
    cmyk = decode_image(encode(base.convert("CMYK"), "JPEG"))
    assert np.abs(cmyk.astype(int) - np.asarray(base)).mean() < 8
    frames = [Image.new("RGB", (40, 30), c) for c in ((250, 0, 0), (0, 250, 0))]
    animated = decode_image(encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True))
    assert animated.shape == (30, 40, 3) and animated[0, 0, 0] > 200  # the first frame
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    assert decode_image(encode(base, "JPEG", exif=exif.tobytes())).shape == (96, 80, 3)


@pytest.mark.parametrize("cut", [10, 100, 500, 2000])
def test_truncated_headers_are_422_not_500(cut):
    data = need(FACES / OBAMA).read_bytes()
    with pytest.raises(ImageError) as error:
        decode_image(data[:cut])
    assert error.value.status in (415, 422)


def test_tiny_images_and_big_min_face_size_are_no_face(client):
    assert (
        not can_hold_a_face(19, 19, 20)
        and not can_hold_a_face(1, 40000, 8)
        and not can_hold_a_face(11, 500, 8)
        and can_hold_a_face(480, 853, 20)
    )
    for size in ((1, 1), (19, 19), (1, 500), (40000, 1)):
        response = client.post("/v1/detect", **upload(encode(picture(size), "PNG")))
        assert response.status_code == 200 and response.json()["faces"] == []
    assert client.post("/v1/detect?min_face_size=481", **upload(photo(OBAMA))).json()["faces"] == []


def test_nested_json_is_refused_before_parsing(client):
    assert json_depth(b'{"a": [1, {"b": "[[[[["}]}') == 3
    nested = b"[" * 100_000 + b"]" * 100_000
    for path in ("/v1/detect", "/v1/subjects"):
        assert_error(
            client.post(path, content=nested, headers={"content-type": "application/json"}), 400, "invalid_json"
        )


def test_every_integer_parameter_is_bounded(client):
    assert_error(client.get("/v1/subjects?offset=9223372036854775808"), 422, "validation_error")
    assert_error(client.get("/v1/subjects?limit=101"), 422, "validation_error")
    assert_error(
        client.post("/v1/identify?top_k=1000000&threshold=0.5", **upload(photo(OBAMA))), 422, "validation_error"
    )
    assert_error(
        client.post("/v1/detect?min_face_size=99999999999999999999", **upload(photo(OBAMA))), 422, "validation_error"
    )


def test_subject_ids_metadata_and_pages_are_bounded(client):
    for subject_id in (".", ".."):
        assert_error(client.post("/v1/subjects", json={"id": subject_id}), 422, "validation_error")
    assert_error(
        client.post("/v1/subjects", json={"id": "big", "metadata": {"x": "a" * 20_000}}), 422, "validation_error"
    )
    deep: dict = {}
    node = deep
    for _ in range(10):
        node["a"] = {}
        node = node["a"]
    assert_error(client.post("/v1/subjects", json={"id": "deep", "metadata": deep}), 422, "validation_error")
    assert_error(
        client.post(
            "/v1/subjects",
            content=b'{"id": "huge", "metadata": {"x": "' + b"a" * 300_000 + b'"}}',
            headers={"content-type": "application/json"},
        ),
        413,
        "payload_too_large",
    )
    assert_error(
        client.post(
            "/v1/subjects",
            content=b'{"id": "nan", "metadata": {"x": NaN, "y": 1e999}}',
            headers={"content-type": "application/json"},
        ),
        422,
        "validation_error",
    )
    for i in range(3):
        assert client.post("/v1/subjects", json={"id": f"s{i}", "metadata": {"i": i}}).status_code == 201
    page = client.get("/v1/subjects?limit=2&offset=1").json()
    assert page["total"] == 3 and [s["id"] for s in page["subjects"]] == ["s1", "s2"]


def test_far_outside_the_calibration_names_the_supported_range(make_client, tmp_path, random_onnx_models):
    from stra_face.vision.inference import sha256_file

    write_thresholds(tmp_path / "cal.json", sha256_file(random_onnx_models["embedding"]), {"0.01": 0.2, "0.001": 0.3})
    client = make_client(thresholds_file=tmp_path / "cal.json")
    pair = {"files": {"image1": ("a.jpg", photo(OBAMA)), "image2": ("b.jpg", photo(OBAMA))}}
    body = assert_error(client.post("/v1/verify?far=1e-9", **pair), 422, "far_out_of_range")
    assert "0.001" in body["error"]["message"]
    clamped = client.post("/v1/verify?far=0.5", **pair).json()["decision"]
    assert (clamped["far"], clamped["requested_far"], clamped["clamped"]) == (0.01, 0.5, True)


def test_unexpected_errors_answer_json_500_and_are_counted(client, monkeypatch):
    state = client.app.state.service

    def broken(*args, **kwargs):
        raise RuntimeError("detector exploded: /secret/path")

    monkeypatch.setattr(state.detector, "propose", broken)
    response = client.post("/v1/detect", **upload(photo(OBAMA)))
    assert_error(response, 500, "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert (
        'stra_unhandled_exceptions_total{exception="RuntimeError",route="/v1/detect"} 1.0'
        in client.get("/metrics").text
    )


def test_admission_refuses_before_any_work_and_an_idle_queue_takes_any_image(client):
    state = client.app.state.service
    state.admission.active = state.admission.limit  # as if that many requests were in progress
    response = client.post("/v1/detect", content=b"not even read", headers={"content-type": "image/jpeg"})
    assert_error(response, 503, "overloaded")
    assert response.headers["retry-after"] == "1"
    state.admission.active = 0
    with pytest.raises(Overloaded):
        admission = Admission(1, max_pixels=10**9)
        admission.enter()
        admission.enter()

    async def run():  # a queue of 2 faces takes a 5-face image when nothing else waits
        batcher = MicroBatcher(lambda items: items * 2, max_size=8, max_wait_ms=1, queue_size=2)
        await batcher.start()
        try:
            return await batcher.submit(np.ones((5, 3)))
        finally:
            await batcher.stop()

    assert asyncio.run(run()).shape == (5, 3)


def test_openapi_documents_behaviour(client):
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": schema["components"]["securitySchemes"]["APIKeyHeader"]["description"],
    }
    for path in ("/v1/detect", "/v1/verify", "/v1/identify", "/v1/subjects/{subject_id}/faces"):
        assert {"400", "401", "403", "413", "415", "422", "503"} <= set(schema["paths"][path]["post"]["responses"]), (
            path
        )
    assert {"401", "403"} <= set(schema["paths"]["/v1/info"]["get"]["responses"])
    assert "503" in schema["paths"]["/ready"]["get"]["responses"]
    assert list(schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    assert "HTTPValidationError" not in json.dumps(schema)
    not_allowed = client.put("/v1/subjects")
    assert_error(not_allowed, 405, "method_not_allowed")
    assert set(not_allowed.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


def test_docs_are_served_without_a_cdn(client):
    page = client.get("/docs").text
    assert "cdn" not in page.lower() and "/docs/assets/swagger-ui-bundle.js" in page
    assert '"validatorUrl": null' in page  # no badge from validator.swagger.io
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    redoc = client.get("/redoc").text
    assert "fonts.googleapis" not in redoc and "/redoc/assets/redoc.standalone.js" in redoc
    assert client.get("/redoc/assets/redoc.standalone.js").status_code == 200
    for path in ("/docs", "/redoc", "/ui", "/ui/"):  # the browser may fetch nothing from elsewhere
        assert client.get(path).headers["content-security-policy"].startswith("default-src 'self'"), path
    assert client.get("/ui/app.js").headers["content-type"].startswith("text/javascript")


def test_open_routes_with_keys_configured(make_client):
    client = make_client(api_keys=["k"])
    for path in ("/health", "/ready", "/metrics", "/openapi.json", "/docs", "/redoc", "/ui", "/ui/app.js"):
        assert client.get(path).status_code == 200, path
    assert_error(client.get("/v1/info"), 401, "missing_api_key")
    assert_error(client.get("/v1/subjects"), 401, "missing_api_key")


def test_cuda_is_asked_for_only_with_a_gpu(monkeypatch, caplog):
    from stra_face.vision import providers

    # Whatever onnxruntime build is installed: a GPU build lists CUDA, the base install's CPU build does not.
    monkeypatch.setattr(
        providers.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(providers, "cuda_devices", lambda: (0, "no CUDA driver (libcuda.so.1 not found)"))
    with caplog.at_level("INFO", logger="stra_face.providers"):
        assert providers.select_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert "libcuda.so.1 not found" in caplog.text and len(caplog.records) == 1


def test_models_ask_for_cuda_only_with_a_gpu(monkeypatch, caplog, tmp_path):
    """Every model (service, benchmark, training tools) goes through select_providers: no CUDA session,
    hence no CUDA library errors or GPU warnings, on a machine without a driver."""
    import onnx
    from onnx import TensorProto, helper

    from stra_face.vision import inference, providers

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "identity.onnx")
    monkeypatch.setattr(
        providers.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(providers, "cuda_devices", lambda: (0, "no CUDA driver (libcuda.so.1 not found)"))
    with caplog.at_level("INFO"):
        model = inference.OnnxModel(tmp_path / "identity.onnx", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert model.providers == ["CPUExecutionProvider"]
    assert not [r for r in caplog.records if r.levelname == "WARNING"] and "libcuda.so.1 not found" in caplog.text
