"""The Python API (`import stra_face`): the REST API's numbers and answers without a server."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import FACES, ROOT, need
from stra_face.config import ASSETS

SHIPPED = {
    "embedding_model": ASSETS / "dlib_resnet_v1.onnx",
    "expression_model": ASSETS / "expression.onnx",
    "thresholds_file": ASSETS / "thresholds.json",
    "providers": ["CPUExecutionProvider"],
}
# Ten photos: one face, two, a crowd (six), a partial face, a 16/32-bit PNG, a 240p portrait.
PHOTOS = [
    "examples/obama-480p.jpg",
    "examples/biden.jpg",
    "examples/two_people.jpg",
    "examples/alex-lacamoire.png",
    "examples/knn_examples/train/obama/obama2.jpg",
    "examples/knn_examples/test/obama_and_biden.jpg",
    "examples/obama-240p.jpg",
    "tests/test_images/obama_partial_face.jpg",
    "tests/test_images/32bit.png",
    "more/insightface/t1.jpg",
]
PAIRS = [  # (image1, image2): same person and different people
    ("examples/obama-480p.jpg", "examples/knn_examples/train/obama/obama2.jpg"),
    ("examples/obama-480p.jpg", "examples/biden.jpg"),
    ("examples/two_people.jpg", "examples/biden.jpg"),
    ("examples/alex-lacamoire.png", "examples/biden.jpg"),
]


@pytest.fixture(scope="module")
def analyzer():
    from stra_face import FaceAnalyzer

    return FaceAnalyzer(**SHIPPED)


@pytest.fixture
def rest_client(tmp_path):
    """rest_client(**settings) -> the service on the shipped models in a started TestClient (gallery in tmp_path)."""
    from fastapi.testclient import TestClient

    from stra_face.service.app import create_app
    from stra_face.service.settings import Settings

    clients = []

    def factory(**overrides):
        client = TestClient(
            create_app(Settings(**SHIPPED | {"gallery_path": tmp_path / "service.sqlite3"} | overrides))
        )
        clients.append(client.__enter__())
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


def photo(name: str):
    return need(FACES / name)


def keys(value):
    """The nested key structure of a JSON value (lists by their first item)."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], (dict, list)):
        return [keys(value[0])]
    return None


def assert_faces_close(ours: list[dict], theirs: list[dict]) -> None:
    assert len(ours) == len(theirs)
    for mine, rest in zip(ours, theirs):
        assert [mine["box"][k] for k in ["x1", "y1", "x2", "y2"]] == pytest.approx(
            [rest["box"][k] for k in ["x1", "y1", "x2", "y2"]], abs=1e-2
        )
        np.testing.assert_allclose(mine["landmarks"], rest["landmarks"], atol=1e-2)
        assert mine["score"] == pytest.approx(rest["score"], abs=1e-5)
        if "embedding" in rest:
            np.testing.assert_allclose(mine["embedding"], rest["embedding"], atol=1e-5)
        if "expression" in rest:
            assert mine["expression"]["dominant"] == rest["expression"]["dominant"]
            np.testing.assert_allclose(
                list(mine["expression"]["probabilities"].values()),
                list(rest["expression"]["probabilities"].values()),
                atol=1e-5,
            )


@pytest.mark.slow
def test_python_api_gives_the_rest_api_answers(analyzer, rest_client):
    """Same faces, boxes, landmarks, embeddings (1e-5), expressions and verify decisions as the service,
    with the same keys, on real photos and the shipped models."""
    client = rest_client()
    for name in PHOTOS:
        data = photo(name).read_bytes()
        rest = client.post("/v1/analyze", files={"image": (name, data)}).json()
        ours = analyzer.analyze(photo(name))
        assert keys(ours) == keys(rest), name
        assert (ours["faces_found"], ours["truncated"], ours["image"], ours["model_sha256"]) == (
            rest["faces_found"],
            rest["truncated"],
            rest["image"],
            rest["model_sha256"],
        )
        assert_faces_close(ours["faces"], rest["faces"])
    decisions = []
    for first, second in PAIRS:
        files = {"image1": ("a", photo(first).read_bytes()), "image2": ("b", photo(second).read_bytes())}
        rest = client.post("/v1/verify", files=files).json()
        ours = analyzer.verify(photo(first), photo(second))
        assert keys(ours) == keys(rest)
        assert ours["decision"] == rest["decision"] and ours["verified"] == rest["verified"]
        assert ours["similarity"] == pytest.approx(rest["similarity"], abs=1e-5)
        assert [(p["face1"], p["face2"], p["verified"]) for p in ours["pairs"]] == [
            (p["face1"], p["face2"], p["verified"]) for p in rest["pairs"]
        ]
        decisions.append(ours["verified"])
    assert decisions == [True, False, True, False]  # two_people.jpg shows Biden
    for route, method in (("detect", analyzer.detect), ("embed", analyzer.embed), ("expression", analyzer.expression)):
        rest = client.post(f"/v1/{route}", files={"image": ("p", photo(PHOTOS[2]).read_bytes())}).json()
        ours = method(photo(PHOTOS[2]))
        assert keys(ours) == keys(rest), route
        assert_faces_close(ours["faces"], rest["faces"])


def test_every_kind_of_image_gives_the_same_faces(analyzer):
    path = photo("examples/two_people.jpg")
    reference = analyzer.embed(path)
    pil = Image.open(path)
    kinds = {
        "str": str(path),
        "bytes": path.read_bytes(),
        "ndarray": np.asarray(pil.convert("RGB")),
        "PIL": pil,
        "PIL RGBA": pil.convert("RGBA"),
    }
    for kind, image in kinds.items():
        answer = analyzer.embed(image)
        assert answer["faces_found"] == reference["faces_found"] == 2, kind
        assert_faces_close(answer["faces"], reference["faces"])
    grey = np.asarray(pil.convert("L"))  # (H, W) greyscale is taken as RGB
    assert analyzer.detect(grey)["faces_found"] == 2


def test_bad_images_raise_clear_errors(analyzer, tmp_path):
    from stra_face.vision.decode import ImageError

    with pytest.raises(FileNotFoundError, match="no such image file"):
        analyzer.detect(tmp_path / "missing.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageError, match="text.jpg") as error:
        analyzer.detect(tmp_path / "text.jpg")
    assert error.value.code == "invalid_image"
    with pytest.raises(ImageError, match=r"\(H, W, 3\)"):
        analyzer.detect(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(TypeError, match="a path, bytes"):
        analyzer.detect(42)
    blank = io.BytesIO()
    Image.new("RGB", (200, 200), "white").save(blank, "JPEG")
    assert analyzer.detect(blank.getvalue())["faces"] == []
    with pytest.raises(ImageError, match="no face found in image2") as error:
        analyzer.verify(photo("examples/biden.jpg"), blank.getvalue())
    assert error.value.code == "no_face"


def test_verify_chooses_thresholds_as_the_service_does(analyzer):
    from stra_face.vision.thresholds import ThresholdError

    calibrated = analyzer.calibration.thresholds
    assert analyzer.decision().far == analyzer.settings.default_far
    clamped = analyzer.decision(far=0.05)  # the strictest FAR not above the target, and says so
    assert (clamped.threshold, clamped.clamped) == (calibrated[max(f for f in calibrated if f <= 0.05)], True)
    assert analyzer.decision(threshold=0.5).far is None
    with pytest.raises(ThresholdError) as error:
        analyzer.decision(far=1e-9)
    assert (error.value.code, error.value.status) == ("far_out_of_range", 422)
    loose = analyzer.verify(photo("examples/obama-480p.jpg"), photo("examples/biden.jpg"), threshold=-1.0)
    assert loose["verified"] and {k: loose["decision"][k] for k in ("threshold", "far", "calibration", "clamped")} == {
        "threshold": -1.0,
        "far": None,
        "calibration": "request",
        "clamped": False,
    }


def test_gallery_enrolls_and_identifies_and_the_service_reads_it(analyzer, rest_client, tmp_path):
    from stra_face import Gallery
    from stra_face.vision.decode import ImageError

    location = tmp_path / "people.sqlite3"
    with Gallery(location, analyzer) as gallery:
        enrolled = gallery.enroll("obama", photo("examples/obama-480p.jpg"), name="Barack Obama")
        gallery.enroll("biden", photo("examples/biden.jpg"))
        assert enrolled["subject_id"] == "obama" and enrolled["face"]["current_model"]
        with pytest.raises(ImageError, match="2 faces found") as error:
            gallery.enroll("obama", photo("examples/two_people.jpg"))
        assert error.value.code == "multiple_faces"
        found = gallery.identify(photo("examples/knn_examples/test/obama_and_biden.jpg"))
        best = [face["matches"][0] for face in found["faces"][:2]]
        assert [(m["subject_id"], m["accepted"]) for m in best] == [("obama", True), ("biden", True)]
        listed = gallery.subjects()
        assert listed["total"] == 2 and listed["enrolments"] == {"current_model": 2, "need_reenrolment": 0}
        assert gallery.subject("obama")["name"] == "Barack Obama"
    client = rest_client(gallery_path=location)
    rest = client.post(
        "/v1/identify", files={"image": ("o.jpg", photo("examples/knn_examples/train/obama/obama2.jpg").read_bytes())}
    ).json()
    assert rest["faces"][0]["matches"][0]["subject_id"] == "obama"
    assert keys(found) == keys(rest)
    assert keys(listed) == keys(client.get("/v1/subjects").json())


@pytest.mark.slow
def test_import_is_light_and_the_api_needs_neither_fastapi_nor_torch():
    """`import stra_face` loads no numpy / ONNX Runtime; using it loads neither FastAPI nor torch."""
    code = (
        "import json, sys, time; t = time.perf_counter(); import stra_face as sf; took = time.perf_counter() - t\n"
        "before = [m for m in ('numpy', 'onnxruntime', 'fastapi', 'torch') if m in sys.modules]\n"
        f"faces = sf.detect({str(photo('examples/obama-240p.jpg'))!r})['faces_found']\n"
        "print(json.dumps({'took': took, 'before': before, "
        "'after': [m for m in ('fastapi', 'starlette', 'torch') if m in sys.modules], 'faces': faces}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    print(f"import stra_face: {seen['took'] * 1000:.1f} ms")
    assert (seen["before"], seen["after"], seen["faces"]) == ([], [], 1)
