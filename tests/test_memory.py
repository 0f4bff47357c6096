"""What one request may cost: decoder work, candidates per network call, pixels in flight, RSS after a crowd."""

from __future__ import annotations

import io
import re
import time

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image

from benchmarks.memory_bench import FACE_PHOTO, crowd_image, encode
from stra_face.service.limits import Admission
from stra_face.vision import detect
from stra_face.vision.decode import MAX_JPEG_SCANS, ImageError, decode_image, jpeg_scans
from stra_face.vision.inference import Overloaded
from tests.conftest import need


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"], body
    return body


# --------------------------------------------------------------------------- decoder work


def progressive_jpeg(repeats: int) -> bytes:
    """A progressive JPEG whose shortest scan is written `repeats` more times (libjpeg decodes each)."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(
        buffer, "JPEG", progressive=True, quality=90
    )
    data = buffer.getvalue()
    starts = [match.start() for match in re.finditer(rb"\xff\xda", data)]
    scans = [data[start:end] for start, end in zip(starts, starts[1:] + [len(data) - 2])]
    return data[:-2] + min(scans, key=len) * repeats + data[-2:]  # before EOI


def test_jpeg_scans_are_counted_by_walking_markers():
    plain = progressive_jpeg(0)
    assert jpeg_scans(plain) == 10  # libjpeg's progressive script
    assert jpeg_scans(progressive_jpeg(2500)) == 2510
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buffer, "JPEG")
    assert jpeg_scans(buffer.getvalue()) == 1  # baseline
    # SOS bytes inside an APP segment (an EXIF thumbnail, a profile) are not scans
    fake = b"\xff\xe1" + (2 + 600).to_bytes(2, "big") + b"\xff\xda" * 300
    assert jpeg_scans(plain[:2] + fake + plain[2:]) == 10


def test_a_jpeg_repeating_its_scans_is_refused_before_decoding():
    bomb = progressive_jpeg(2500)
    started = time.process_time()
    with pytest.raises(ImageError) as refused:
        decode_image(bomb)
    assert time.process_time() - started < 0.5
    assert (refused.value.code, refused.value.status) == ("corrupt_image", 422)
    assert decode_image(progressive_jpeg(MAX_JPEG_SCANS - 10)).shape == (256, 256, 3)  # up to the limit: decoded


def test_the_service_answers_422_to_a_scan_bomb(make_client):
    client = make_client()
    response = client.post("/v1/detect", files={"image": ("bomb.jpg", progressive_jpeg(2500), "image/jpeg")})
    assert "2510 scans" in assert_error(response, 422, "corrupt_image")["error"]["message"]


# --------------------------------------------------------------------------- candidates per network call


def test_no_rnet_or_onet_call_gets_more_than_its_chunk(monkeypatch):
    """A crowd brings thousands of candidates; each network call takes at most RNET_CHUNK / ONET_CHUNK
    of them (here made small, on a 16-face crowd), and the faces are those of one call per network."""
    image = crowd_image(rows=4, photo=need(FACE_PHOTO))
    detector = detect.FaceDetector()
    whole = detector.detect(image)
    sizes = {"rnet": [], "onet": []}
    for name, calls in sizes.items():
        model = getattr(detector, name)
        session = model.session

        class Spy:
            def run(self, names, feeds, _session=session, _sizes=calls):
                _sizes.append(len(feeds["input"]))
                return _session.run(names, feeds)

        monkeypatch.setattr(model, "session", Spy())
    monkeypatch.setattr(detect, "RNET_CHUNK", 40)
    monkeypatch.setattr(detect, "ONET_CHUNK", 8)
    chunked = detector.detect(image)
    assert max(sizes["rnet"]) == 40 and len(sizes["rnet"]) > 1 and max(sizes["onet"]) == 8 and len(sizes["onet"]) > 1, (
        sizes
    )
    assert len(chunked) == len(whole) == 16
    for a, b in zip(chunked, whole):
        np.testing.assert_allclose(a.box, b.box, atol=1e-2)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-2)


def test_the_default_chunks_bound_a_225_face_crowd():
    assert detect.RNET_CHUNK <= 256 and detect.ONET_CHUNK <= 64


# --------------------------------------------------------------------------- pixels in flight


def test_admission_holds_pixels_and_gives_them_back():
    admission = Admission(8, max_pixels=100)
    with admission.reserve(60):
        assert admission.pixels == 60
        with pytest.raises(Overloaded), admission.reserve(50):  # 503: others hold the budget
            pass
        with admission.reserve(40):
            assert admission.pixels == 100
    assert admission.pixels == 0
    with pytest.raises(ImageError) as refused, admission.reserve(101):  # 413: could never fit
        pass
    assert refused.value.status == 413 and admission.pixels == 0
    with pytest.raises(RuntimeError), admission.reserve(100):
        raise RuntimeError("the work failed")
    assert admission.pixels == 0


def test_work_pixels_count_the_image_and_the_first_pyramid_level():
    detector = detect.FaceDetector()
    assert detector.work_pixels(480, 640) == 480 * 640 + 4 * int(480 * 0.6 + 1) * int(
        640 * 0.6 + 1
    )  # 20 px faces: scale 12/20
    assert detector.work_pixels(2000, 2000, 8) == 2000**2 + 4 * 3001**2  # 8 px faces: the image at 1.5x
    assert detector.work_pixels(6000, 6000) < 6000**2 + 4 * 520**2  # default: a pyramid of 512 px at most


def test_image_requests_are_admitted_against_the_pixel_budget(make_client):
    portrait = encode(crowd_image(rows=1, tile=400, photo=need(FACE_PHOTO)))  # 400x400: 0.16 MP + its pyramid
    detector = detect.FaceDetector()
    need_pixels = detector.work_pixels(400, 400)
    client = make_client(max_pixels_in_flight=2 * need_pixels)
    state = client.app.state.service
    assert client.post("/v1/detect", files={"image": ("a.jpg", portrait, "image/jpeg")}).status_code == 200
    state.admission.pixels = need_pixels + 1  # as if another request held just over half the budget
    response = client.post("/v1/detect", files={"image": ("a.jpg", portrait, "image/jpeg")})
    assert_error(response, 503, "overloaded")
    assert response.headers["retry-after"] == "1"
    # a verify's two images are admitted together: both or neither
    response = client.post(
        "/v1/verify?threshold=0.5",
        files={"image1": ("a.jpg", portrait, "image/jpeg"), "image2": ("b.jpg", portrait, "image/jpeg")},
    )
    assert_error(response, 503, "overloaded")
    state.admission.pixels = 0
    assert client.post(
        "/v1/verify?threshold=0.5",
        files={"image1": ("a.jpg", portrait, "image/jpeg"), "image2": ("b.jpg", portrait, "image/jpeg")},
    ).status_code in (200, 422)
    assert state.admission.pixels == 0
    # asking for 8 px faces on the image needs more than the whole budget: 413, whatever else runs
    response = client.post("/v1/detect?min_face_size=8", files={"image": ("a.jpg", portrait, "image/jpeg")})
    assert "min_face_size" in assert_error(response, 413, "image_too_large")["error"]["message"]


# --------------------------------------------------------------------------- the process's memory


@pytest.mark.slow
def test_rss_after_a_225_face_image_stays_bounded(live_server):
    """One 1500x1500 image of 225 faces took a server from 581 to 2,491 MiB for good (R-Net and O-Net
    got 4,858 / 1,878 candidates in one call each and ONNX Runtime's arena kept its peak)."""
    crowd = encode(crowd_image(photo=need(FACE_PHOTO)))
    process = psutil.Process(live_server.process.pid)
    before = process.memory_info().rss
    for _ in range(2):
        response = httpx.post(
            live_server.url + "/v1/detect", files={"image": ("crowd.jpg", crowd, "image/jpeg")}, timeout=120
        )
        assert response.status_code == 200 and response.json()["faces_found"] == 225, response.text[:300]
    grown = (process.memory_info().rss - before) / 2**20
    print(f"RSS {before / 2**20:.0f} MiB before, +{grown:.0f} MiB after two 225-face images")
    assert grown < 400, grown
