"""Decisions users can trust: the face-quality gate, far_at_score, open-set identification, own calibration."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import FACES, SHARED_DATA, need
from stra_face.gallery import Match
from stra_face.vision.decode import decode_image
from stra_face.vision.detect import Detection, FaceDetector
from stra_face.vision.identify import assign_subjects
from stra_face.vision.quality import assess
from stra_face.vision.thresholds import Calibration, calibration_entry, load_calibration, threshold_at_far

SHIPPED = Path(__file__).resolve().parents[1] / "stra_face" / "assets" / "models"
EXAMPLES = FACES / "examples"


@pytest.fixture
def client(make_client):
    return make_client()


def photo(name: str) -> bytes:
    return need(EXAMPLES / name).read_bytes()


def upload(data: bytes) -> dict:
    return {"files": {"image": ("x.jpg", data, "image/jpeg")}}


def test_quality_gate_keeps_obamas_face_and_drops_the_suit_edge():
    image = decode_image(photo("obama-720p.jpg"))
    detections = FaceDetector().detect(image)
    assert len(detections) == 2  # MTCNN alone finds the suit edge too (score ~0.91)
    qualities = [assess(image, d) for d in detections]
    assert [q.passed for q in qualities] == [True, False]
    assert "low_detector_score" in qualities[1].reasons and qualities[1].measures["detector_score"] < 0.95


def test_quality_gate_names_bad_landmarks_small_faces_and_blur():
    image = decode_image(photo("obama-720p.jpg"))
    face = FaceDetector().detect(image)[0]
    upside_down = Detection(face.box, face.score, face.landmarks[[3, 4, 2, 0, 1]])  # mouth where the eyes are
    assert "implausible_landmarks" in assess(image, upside_down).reasons
    mirrored = Detection(face.box, face.score, face.landmarks[[1, 0, 2, 4, 3]])  # left and right swapped
    assert "implausible_landmarks" in assess(image, mirrored).reasons
    centre = face.landmarks.mean(axis=0)
    tiny = Detection(face.box, face.score, centre + (face.landmarks - centre) * 0.1)
    assert "too_small" in assess(image, tiny).reasons
    flat = np.full_like(image, 128)
    assert assess(flat, face).reasons == ["blurry"]


def test_detect_reports_one_face_and_says_why_the_other_was_dropped(client):
    body = client.post("/v1/detect", **upload(photo("obama-720p.jpg"))).json()
    assert body["faces_found"] == 1 and len(body["faces"]) == 1 and body["low_quality"] == 1
    assert body["faces"][0]["quality"]["passed"] is True
    assert body["rejected"][0]["quality"]["reasons"] and body["rejected"][0]["quality"]["passed"] is False
    kept = client.post("/v1/detect?keep_low_quality=true", **upload(photo("obama-720p.jpg"))).json()
    assert (
        kept["faces_found"] == 2
        and kept["rejected"] == []
        and [f["quality"]["passed"] for f in kept["faces"]] == [True, False]
    )


def shipped_calibration() -> Calibration:
    from stra_face.vision.cards import sha256_file

    calibration = load_calibration(SHIPPED / "thresholds.json", sha256_file(SHIPPED / "dlib_resnet_v1.onnx"))
    assert calibration is not None and calibration.far_table
    return calibration


def test_far_at_score_is_monotone_and_agrees_with_the_calibrated_thresholds():
    calibration = shipped_calibration()
    scores = np.linspace(0.5, 1.0, 501)
    fars = [calibration.far_at_score(s) for s in scores]
    assert all(a >= b for a, b in itertools.pairwise(fars)) and fars[0] == 1.0
    assert fars[-1] == pytest.approx(calibration.far_floor)
    for far, threshold in calibration.thresholds.items():
        assert calibration.far_at_score(threshold) <= far * (1 + 1e-9)  # the threshold keeps its promise
        assert calibration.far_at_score(threshold - 2e-3) > far * 0.5  # and is not far stricter than needed


def test_far_table_matches_the_impostor_scores_it_summarises():
    rng = np.random.default_rng(0)
    similarities = np.r_[rng.normal(0.3, 0.1, 5000), rng.normal(0.8, 0.1, 500)]
    issame = np.r_[np.zeros(5000, bool), np.ones(500, bool)]
    entry = calibration_entry(similarities, issame)
    calibration = Calibration(
        {float(k): v for k, v in entry["thresholds"].items()},
        "synthetic",
        tuple(map(tuple, entry["far_table"])),
        {"impostor_pairs": 5000},
    )
    assert set(entry["thresholds"]) == {"0.1", "0.01", "0.001"}  # 5000 impostors cannot measure 1e-4
    for far in (1e-3, 1e-2, 1e-1):
        threshold = threshold_at_far(similarities, issame, far)
        measured = np.mean(similarities[~issame] >= threshold)
        assert calibration.far_at_score(threshold) == pytest.approx(measured)
        table_threshold, table_far = calibration.threshold_at_far(far)
        assert table_far <= far and np.mean(similarities[~issame] >= table_threshold) == pytest.approx(table_far)


def match(subject: str, similarity: float) -> Match:
    return Match(subject_id=subject, name=None, face_id=f"{subject}-face", similarity=similarity)


def test_assignment_never_gives_one_subject_two_faces():
    # both faces look most like "a"; the second face is the better "a", so the first must settle for "b"
    candidates = [[match("a", 0.90), match("b", 0.85)], [match("a", 0.95)]]
    assert assign_subjects(candidates, threshold=0.8) == ["b", "a"]
    assert assign_subjects([[match("a", 0.90)], [match("a", 0.95)]], threshold=0.8) == [None, "a"]
    assert assign_subjects([[match("a", 0.70)]], threshold=0.8) == [None]


def shipped_client(make_client, **settings):
    return make_client(
        embedding_model=SHIPPED / "dlib_resnet_v1.onnx", thresholds_file=SHIPPED / "thresholds.json", **settings
    )


@pytest.mark.slow
def test_identify_answers_unknown_for_someone_not_enrolled(make_client):
    client = shipped_client(make_client)
    for subject, image in (("obama", "obama-480p.jpg"), ("biden", "biden.jpg")):
        assert client.post("/v1/subjects", json={"id": subject}).status_code == 201
        assert client.post(f"/v1/subjects/{subject}/faces", **upload(photo(image))).status_code == 201
    known = client.post("/v1/identify", **upload(photo("obama-720p.jpg"))).json()
    assert known["decision"]["gallery_faces"] == 2 and known["decision"]["requested_fpir"] == 0.01
    assert known["decision"]["fpir"] == pytest.approx(2 * known["decision"]["far"])
    assert [(f["subject_id"], f["unknown"]) for f in known["faces"]] == [("obama", False)]
    assert known["faces"][0]["matches"][0]["far_at_score"] <= known["decision"]["far"]
    stranger = client.post("/v1/identify", **upload(photo("lin-manuel-miranda.png"))).json()
    assert [(f["subject_id"], f["unknown"]) for f in stranger["faces"]] == [(None, True)]
    assert stranger["faces"][0]["matches"][0]["far_at_score"] > stranger["decision"]["far"]


def test_one_subject_is_never_two_faces_of_one_photo(client):
    client.post("/v1/subjects", json={"id": "only"})
    assert client.post("/v1/subjects/only/faces", **upload(photo("obama-480p.jpg"))).status_code == 201
    faces = client.post("/v1/identify?threshold=-1", **upload(photo("two_people.jpg"))).json()["faces"]
    assert len(faces) == 2 and all(f["matches"][0]["accepted"] for f in faces)  # both would pass the threshold
    assert sorted((f["subject_id"] or "") for f in faces) == ["", "only"]


def small_identity_folder(root: Path) -> Path:
    """Five LFW people with 2-4 photos each, linked (not copied) into root."""
    source = need(SHARED_DATA / "lfw" / "raw_sample")
    people = [p for p in sorted(source.iterdir()) if 2 <= len(list(p.iterdir())) <= 4][:5]
    for person in people:
        (root / person.name).symlink_to(person, target_is_directory=True)
    return root


@pytest.mark.slow
def test_calibrate_command_writes_a_file_the_service_loads(make_client, tmp_path, monkeypatch, capsys):
    from stra_face.calibration import main
    from stra_face.service.settings import Settings

    (tmp_path / "people").mkdir()
    folder = small_identity_folder(tmp_path / "people")
    out = tmp_path / "mine.json"
    monkeypatch.setenv("STRA_EMBEDDING_MODEL", str(SHIPPED / "dlib_resnet_v1.onnx"))
    monkeypatch.setenv("STRA_PROVIDERS", '["CPUExecutionProvider"]')
    entry = main([str(folder), "--out", str(out)])
    assert "warning: FAR 0.001" in capsys.readouterr().out  # a few people cannot measure 1e-3 well
    assert entry["genuine_pairs"] > 0 and entry["impostor_pairs"] > entry["genuine_pairs"]
    assert out.with_suffix(".roc.png").exists() or out.with_suffix(".roc.csv").exists()
    monkeypatch.setenv("STRA_THRESHOLDS_FILE", str(out))
    assert Settings().thresholds_file == out
    client = make_client(embedding_model=SHIPPED / "dlib_resnet_v1.onnx", thresholds_file=Settings().thresholds_file)
    info = client.get("/v1/info").json()["thresholds"]
    assert str(folder.resolve()) in info["source"] and info["file"] == str(out)
    assert info["impostor_pairs"] == entry["impostor_pairs"]
    stored = json.loads(out.read_text())
    assert list(stored) == [client.app.state.service.embedder.sha256]
