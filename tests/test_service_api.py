"""The REST API end to end (random-weight models: these tests check the service, not accuracy)."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from conftest import FACES, need, write_thresholds
from stra_face.vision.align import align_face
from stra_face.vision.decode import decode_image
from stra_face.vision.detect import FaceDetector
from stra_face.vision.inference import EmbeddingModel
from stra_face.vision.preprocess import to_face_input
from test_pipeline import png_bomb

TWO_PEOPLE = "examples/two_people.jpg"
OBAMA = "examples/obama-480p.jpg"
BIDEN = "examples/biden.jpg"


def photo(path: str) -> bytes:
    return need(FACES / path).read_bytes()


def upload(data: bytes, field: str = "image") -> dict:
    return {"files": {field: ("photo.jpg", data, "application/octet-stream")}}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    return body


@pytest.fixture
def client(make_client):
    return make_client()


def blank_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (128, 128, 128)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_detect_multipart_and_base64_give_the_same_faces(client):
    data = photo(TWO_PEOPLE)
    multipart = client.post("/v1/detect", **upload(data)).json()
    as_json = client.post("/v1/detect", json={"image": base64.b64encode(data).decode()}).json()
    data_url = client.post(
        "/v1/detect", json={"image": "data:image/jpeg;base64," + base64.b64encode(data).decode()}
    ).json()
    assert len(multipart["faces"]) == 2
    assert multipart == as_json == data_url
    face = multipart["faces"][0]
    assert len(face["landmarks"]) == 5 and 0.9 <= face["score"] <= 1
    assert multipart["image"] == {"width": 1126, "height": 661}


def test_group_photo_gives_every_face(client):
    response = client.post("/v1/analyze", **upload(photo("more/insightface/t1.jpg")))
    assert response.status_code == 200
    assert len(response.json()["faces"]) == 6


def test_embeddings_are_unit_vectors_and_match_the_shared_pipeline(client, random_onnx_models):
    data = photo(OBAMA)
    body = client.post("/v1/embed", **upload(data)).json()
    embedding = np.array(body["faces"][0]["embedding"])
    assert embedding.shape == (128,) and abs(np.linalg.norm(embedding) - 1) < 1e-5
    # Same result as the pipeline functions called directly: one code path.
    image = decode_image(data)
    detection = FaceDetector().detect(image)[0]
    model = EmbeddingModel(random_onnx_models["embedding"], ["CPUExecutionProvider"])
    direct = model.embed(align_face(image, detection.landmarks)[None])[0]
    np.testing.assert_allclose(embedding, direct, atol=1e-5)
    assert body["model_sha256"] == model.sha256
    flipped = np.array(client.post("/v1/embed?flip=true", **upload(data)).json()["faces"][0]["embedding"])
    aligned = align_face(image, detection.landmarks)[None]
    both = model.run(to_face_input(aligned)) + model.run(to_face_input(aligned[:, :, ::-1]))
    np.testing.assert_allclose(flipped, (both / np.linalg.norm(both))[0], atol=1e-5)


def test_expression_is_a_distribution_over_seven_classes(client):
    body = client.post("/v1/expression", **upload(photo(TWO_PEOPLE))).json()
    assert len(body["faces"]) == 2
    for face in body["faces"]:
        probabilities = face["expression"]["probabilities"]
        assert list(probabilities) == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
        assert abs(sum(probabilities.values()) - 1) < 1e-5 and all(0 <= p <= 1 for p in probabilities.values())
        assert face["expression"]["dominant"] == max(probabilities, key=probabilities.get)


def test_verify_compares_every_pair_and_reports_its_threshold(client):
    two, one = photo(TWO_PEOPLE), photo(OBAMA)
    response = client.post("/v1/verify?threshold=0.5", files={"image1": ("a.jpg", two), "image2": ("b.jpg", one)})
    body = response.json()
    assert response.status_code == 200
    assert len(body["pairs"]) == 2 and len(body["faces1"]) == 2 and len(body["faces2"]) == 1
    assert body["best"] == body["pairs"][0] and body["similarity"] == max(p["similarity"] for p in body["pairs"])
    assert body["decision"] | {"requested_far": None} == {
        "threshold": 0.5,
        "far": None,
        "requested_far": None,
        "clamped": False,
        "calibration": "request",
        "fpir": None,
        "requested_fpir": None,
        "gallery_faces": None,
    }
    assert body["verified"] == (body["similarity"] >= 0.5)
    same = client.post("/v1/verify?threshold=0.99", files={"image1": ("a.jpg", one), "image2": ("b.jpg", one)}).json()
    assert same["verified"] is True and same["similarity"] > 0.999


def test_verify_uses_calibrated_threshold_for_the_requested_far(make_client, tmp_path, random_onnx_models):
    sha = EmbeddingModel(random_onnx_models["embedding"], ["CPUExecutionProvider"]).sha256
    write_thresholds(tmp_path / "cal.json", sha, {"0.01": 0.2, "0.001": 0.3, "0.0001": 0.4})
    client = make_client(thresholds_file=tmp_path / "cal.json", default_far=0.001)
    files = {"image1": ("a.jpg", photo(OBAMA)), "image2": ("b.jpg", photo(BIDEN))}
    assert client.post("/v1/verify", files=files).json()["decision"]["threshold"] == 0.3
    strict = client.post("/v1/verify?far=0.0005", files=files).json()["decision"]
    # never looser than asked, and says so
    assert (strict["threshold"], strict["far"], strict["requested_far"], strict["clamped"], strict["calibration"]) == (
        0.4,
        0.0001,
        0.0005,
        True,
        "unit-test",
    )
    assert client.get("/v1/info").json()["thresholds"]["far_to_cosine"] == {"0.0001": 0.4, "0.001": 0.3, "0.01": 0.2}


def test_verify_without_calibration_or_threshold_is_refused(client):
    files = {"image1": ("a.jpg", photo(OBAMA)), "image2": ("b.jpg", photo(OBAMA))}
    assert_error(client.post("/v1/verify", files=files), 503, "model_not_calibrated")


def test_verify_side_without_face_is_422_never_verified(client):
    files = {"image1": ("a.jpg", photo(OBAMA)), "image2": ("b.jpg", blank_jpeg())}
    body = assert_error(client.post("/v1/verify?threshold=-1", files=files), 422, "no_face")
    assert "image2" in body["error"]["message"]


@pytest.mark.parametrize(
    "request_kwargs, status, code",
    [
        ({"content": b"", "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
        ({"content": b"", "headers": {"content-type": "image/jpeg"}}, 415, "unsupported_media_type"),
        ({"files": {"image": ("empty.jpg", b"")}}, 422, "empty_image"),
        ({"files": {"image": ("notes.txt", b"hello, I am a text file")}}, 415, "invalid_image"),
        ({"files": {"other": ("a.jpg", b"x")}}, 422, "missing_image"),
        ({"json": {"image": "this is not base64!!"}}, 422, "invalid_base64"),
        ({"json": {"image": 12345}}, 422, "invalid_base64"),
        ({"json": ["image"]}, 422, "validation_error"),
        ({"json": {"picture": "aGVsbG8="}}, 422, "missing_image"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_reason(client, request_kwargs, status, code):
    assert_error(client.post("/v1/detect", **request_kwargs), status, code)


def test_truncated_jpeg_bomb_and_oversize_are_rejected(make_client):
    client = make_client(max_image_bytes=2 * 2**20)
    data = photo(OBAMA)
    assert_error(client.post("/v1/embed", **upload(data[: len(data) // 2])), 422, "corrupt_image")
    assert_error(client.post("/v1/embed", **upload(b"\xff\xd8" + b"\0" * (3 * 2**20))), 413, "payload_too_large")
    assert_error(client.post("/v1/embed", **upload(b"\xff\xd8" + b"\0" * (2 * 2**20 + 10))), 413, "image_too_large")
    assert client.get("/health").json() == {"status": "ok"}  # and the server is still fine
    bomb = png_bomb()  # 30000 x 30000 pixels in a few MB
    assert_error(make_client().post("/v1/embed", **upload(bomb)), 413, "image_too_large")


def test_wrong_query_types_and_unknown_routes(client):
    assert_error(client.post("/v1/detect?min_face_size=big", **upload(photo(OBAMA))), 422, "validation_error")
    assert_error(client.post("/v1/identify?top_k=0&threshold=0.5", **upload(photo(OBAMA))), 422, "validation_error")
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    assert_error(client.get("/v1/detect"), 405, "method_not_allowed")


def test_no_face_detects_empty_and_embed_returns_no_faces(client):
    assert client.post("/v1/detect", **upload(blank_jpeg())).json()["faces"] == []
    assert client.post("/v1/embed", **upload(blank_jpeg())).json()["faces"] == []


def test_api_keys(make_client):
    client = make_client(api_keys=["k1", "k2"])
    assert_error(client.post("/v1/detect", **upload(photo(OBAMA))), 401, "missing_api_key")
    assert_error(
        client.post("/v1/detect", headers={"x-api-key": "nope"}, **upload(photo(OBAMA))), 403, "invalid_api_key"
    )
    assert client.post("/v1/detect", headers={"x-api-key": "k2"}, **upload(photo(OBAMA))).status_code == 200
    assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200


def test_info_ready_metrics(client):
    client.post("/v1/detect", **upload(photo(OBAMA)))
    info = client.get("/v1/info").json()
    assert info["models"]["embedding"]["providers"] == ["CPUExecutionProvider"]
    assert len(info["models"]["expression"]["sha256"]) == 64
    assert client.get("/ready").json()["status"] == "ready"
    metrics = client.get("/metrics").text
    assert 'stra_requests_total{method="POST",route="/v1/detect",status="200"} 1.0' in metrics
    assert 'stra_model_provider{model="embedding",provider="CPUExecutionProvider"} 1.0' in metrics
    assert "stra_batch_faces_count" in metrics
    assert "/v1/verify" in client.get("/openapi.json").json()["paths"]


def test_gallery_enroll_identify_delete(client):
    assert (
        client.post("/v1/subjects", json={"id": "obama", "name": "Barack Obama", "metadata": {"team": "a"}}).status_code
        == 201
    )
    assert_error(client.post("/v1/subjects", json={"id": "obama"}), 409, "subject_exists")
    assert_error(client.post("/v1/subjects", json={"id": "bad id with spaces"}), 422, "validation_error")
    generated = client.post("/v1/subjects", json={"name": "Biden"}).json()["id"]
    enrolled = client.post("/v1/subjects/obama/faces", **upload(photo(OBAMA)))
    assert enrolled.status_code == 201, enrolled.text
    face_id = enrolled.json()["face"]["id"]
    assert client.post(f"/v1/subjects/{generated}/faces", **upload(photo(BIDEN))).status_code == 201
    assert_error(client.post("/v1/subjects/obama/faces", **upload(photo(TWO_PEOPLE))), 422, "multiple_faces")
    assert client.post("/v1/subjects/obama/faces?select=largest", **upload(photo(TWO_PEOPLE))).status_code == 201
    assert_error(client.post("/v1/subjects/obama/faces", **upload(blank_jpeg())), 422, "no_face")
    assert_error(client.post("/v1/subjects/ghost/faces", **upload(photo(OBAMA))), 404, "subject_not_found")

    top = client.post("/v1/identify?threshold=0.99", **upload(photo(OBAMA))).json()["faces"][0]["matches"][0]
    assert top["subject_id"] == "obama" and top["face_id"] == face_id and top["accepted"] and top["similarity"] > 0.999
    listed = client.get("/v1/subjects").json()
    assert listed["total"] == 2 and {s["id"] for s in listed["subjects"]} == {"obama", generated}
    assert len(client.get("/v1/subjects/obama").json()["faces"]) == 2

    assert client.delete(f"/v1/subjects/obama/faces/{face_id}").status_code == 204
    assert_error(client.delete(f"/v1/subjects/obama/faces/{face_id}"), 404, "face_not_found")
    assert client.delete("/v1/subjects/obama").status_code == 204
    assert_error(client.get("/v1/subjects/obama"), 404, "subject_not_found")
    matches = client.post("/v1/identify?threshold=0.99", **upload(photo(OBAMA))).json()["faces"][0]["matches"]
    assert [m["subject_id"] for m in matches] == [generated]


def test_a_switch_of_embedding_model_never_mixes_embeddings(client):
    """Faces enrolled with another model (here: one written under another sha256, as after a switch of
    STRA_EMBEDDING_MODEL) are kept, listed as needing re-enrolment and never searched."""
    state = client.app.state.service
    info = client.get("/v1/info").json()["embedding_model"]
    assert info["sha256"] == state.embedder.sha256 and info["dim"] == 128 and info["input_kind"] == "arcface_112"
    client.post("/v1/subjects", json={"id": "old"})
    old = np.zeros(info["dim"], np.float32)
    old[0] = 1
    state.gallery.add_face("old", "enrolled-before-the-switch", old, "0" * 64, None)
    assert client.get("/v1/info").json()["enrolments"] == {"current_model": 0, "need_reenrolment": 1}
    listed = client.get("/v1/subjects").json()
    assert listed["enrolments"] == {"current_model": 0, "need_reenrolment": 1}
    assert listed["subjects"][0]["faces"][0]["current_model"] is False
    assert client.post("/v1/identify?threshold=-1", **upload(photo(OBAMA))).json()["faces"][0]["matches"] == []
    assert client.post("/v1/subjects/old/faces", **upload(photo(OBAMA))).json()["face"]["current_model"] is True
    assert client.get("/v1/info").json()["enrolments"] == {"current_model": 1, "need_reenrolment": 1}
    assert [
        m["subject_id"]
        for m in client.post("/v1/identify?threshold=-1", **upload(photo(OBAMA))).json()["faces"][0]["matches"]
    ] == ["old"]


def test_gallery_persists_across_restarts_and_stores_images_only_when_asked(make_client):
    client = make_client()
    client.post("/v1/subjects", json={"id": "p"})
    client.post("/v1/subjects/p/faces", **upload(photo(OBAMA)))
    client.post("/v1/subjects/p/faces?store_image=true", **upload(photo(OBAMA)))
    client.__exit__(None, None, None)
    faces = make_client().get("/v1/subjects/p").json()["faces"]
    assert [f["has_image"] for f in faces] == [False, True]


def test_concurrent_enrollments_lose_nothing(client):
    subjects = [f"s{i}" for i in range(8)]
    for subject in subjects:
        client.post("/v1/subjects", json={"id": subject})
    data = photo(OBAMA)

    def enroll(subject: str) -> int:
        return client.post(f"/v1/subjects/{subject}/faces", **upload(data)).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(enroll, subjects * 3))
    assert statuses == [201] * 24
    counts = [len(client.get(f"/v1/subjects/{s}").json()["faces"]) for s in subjects]
    assert counts == [3] * 8
    batches = client.get("/metrics").text
    assert "stra_batch_faces_count" in batches


def test_without_expression_model_only_its_routes_are_unavailable(make_client, tmp_path):
    client = make_client(expression_model=tmp_path / "missing.onnx")
    assert_error(client.post("/v1/expression", **upload(photo(OBAMA))), 503, "model_unavailable")
    assert_error(client.post("/v1/analyze", **upload(photo(OBAMA))), 503, "model_unavailable")
    assert client.post("/v1/embed", **upload(photo(OBAMA))).status_code == 200
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["checks"]["expression_model"] is False
    assert "expression" not in client.get("/v1/info").json()["models"]


def test_gallery_in_postgres_when_a_dsn_is_configured(make_client, postgres_dsn):
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS faces, subjects, gallery_version")
    client = make_client(gallery_dsn=postgres_dsn)
    assert client.get("/v1/info").json()["gallery"] in (
        "postgresql",
        "postgresql+pgvector",
    )  # +pgvector: the server has it
    assert client.get("/ready").json()["checks"]["gallery"] is True
    assert client.post("/v1/subjects", json={"id": "obama"}).status_code == 201
    face_id = client.post("/v1/subjects/obama/faces", **upload(photo(OBAMA))).json()["face"]["id"]
    top = client.post("/v1/identify?threshold=0.99", **upload(photo(OBAMA))).json()["faces"][0]["matches"][0]
    assert top["subject_id"] == "obama" and top["face_id"] == face_id
    client.__exit__(None, None, None)
    assert [f["id"] for f in make_client(gallery_dsn=postgres_dsn).get("/v1/subjects/obama").json()["faces"]] == [
        face_id
    ]
