"""The trained models the service loads by default: their cards tell the truth, the face model
tells real people apart (photos of ../shared/data/faces, none of them seen in training), and the
expression model scores on FER2013's PrivateTest what its card says."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from conftest import FACES, SHARED_DATA, need
from stra_face.service.settings import ASSETS, Settings
from stra_face.training.fer import ferplus
from stra_face.training.fer.data import load_fer2013
from stra_face.vision.align import align_face
from stra_face.vision.cards import ModelCard
from stra_face.vision.decode import decode_image
from stra_face.vision.detect import FaceDetector
from stra_face.vision.inference import EmbeddingModel, ExpressionModel, sha256_file

# Models with a card of their own (the three MTCNN files share mtcnn.card.json, checked in test_detect.py).
SHIPPED = sorted(path for path in ASSETS.glob("*.onnx") if path.with_suffix(".card.json").exists())
FER2013 = SHARED_DATA / "fer2013" / "fer2013_jpg.npz"

# Distinct photos per person (resolution variants of one photo left out: they would be easy pairs).
PEOPLE = {
    "obama": [
        "examples/knn_examples/train/obama/obama.jpg",
        "examples/knn_examples/train/obama/obama2.jpg",
        "examples/knn_examples/test/obama1.jpg",
        "tests/test_images/obama3.jpg",
    ],
    "biden": ["examples/biden.jpg", "examples/knn_examples/train/biden/biden2.jpg"],
    "kit_harington": [
        "examples/knn_examples/train/kit_harington/john1.jpeg",
        "examples/knn_examples/train/kit_harington/john2.jpeg",
        "examples/knn_examples/test/johnsnow_test1.jpg",
    ],
    "rose_leslie": [
        "examples/knn_examples/train/rose_leslie/img1.jpg",
        "examples/knn_examples/train/rose_leslie/img2.jpg",
    ],
    "alex_lacamoire": [
        "examples/knn_examples/train/alex_lacamoire/img1.jpg",
        "examples/knn_examples/test/alex_lacamoire1.jpg",
        "examples/alex-lacamoire.png",
    ],
}


def test_the_default_settings_point_at_shipped_models():
    assert Settings().embedding_model.exists(), "the face model must ship in stra_face/assets/models"
    assert Settings().embedding_model in SHIPPED
    assert Settings().expression_model in SHIPPED


@pytest.mark.parametrize("model", SHIPPED, ids=lambda path: path.name)
def test_every_shipped_model_matches_its_card(model):
    card = ModelCard.read(model)
    assert card.file == model.name
    assert card.sha256 == sha256_file(model) and card.size_bytes == model.stat().st_size
    assert card.reproduce.startswith("python -m stra_face.training.")
    assert card.metrics, "a card without measured metrics"
    assert card.precision in ("fp16", "fp32", "int8") and card.model["name"]


def embedding_cards() -> dict[object, ModelCard]:
    cards = {path: ModelCard.read(path) for path in SHIPPED}
    return {path: card for path, card in cards.items() if card.task.startswith("face embedding")}


def test_the_default_face_model_is_the_shipped_one_with_the_best_cfp_fp():
    """The default is the float model with the best CFP-FP; an int8 twin of a model (its card names the source)
    scores within 0.1 point of it, and is chosen by STRA_EMBEDDING_MODEL, never silently."""
    cards = embedding_cards()
    floats = {path: card for path, card in cards.items() if card.precision != "int8"}
    assert floats, "a face model ships"
    best = max(floats, key=lambda path: floats[path].metrics["cfp_fp"]["accuracy_mean"])
    assert Settings().embedding_model == best
    by_sha = {sha256_file(path): card for path, card in floats.items()}
    for card in cards.values():
        if card.precision == "int8":
            source = by_sha[card.extra["quantization"]["source_sha256"]]
            for benchmark in ("lfw", "cfp_fp"):
                assert (
                    abs(card.metrics[benchmark]["accuracy_mean"] - source.metrics[benchmark]["accuracy_mean"]) <= 0.001
                )


def test_int8_face_models_embed_as_their_float_source_does():
    """On real faces (celeba299, chips cut as the service cuts them) an int8 file's embeddings point where its
    float source's do (cosine >= 0.998)."""
    from stra_face.training.export.quantize import celeba_faces
    from stra_face.vision.align import ARCFACE_TEMPLATE

    quantised = {path: card for path, card in embedding_cards().items() if card.precision == "int8"}
    assert quantised, "the int8 face model ships"
    faces = celeba_faces(need(SHARED_DATA / "celeba299" / "aligned112"), count=32, seed=11)
    floats = {sha256_file(path): path for path, card in embedding_cards().items() if card.precision != "int8"}
    for path, card in quantised.items():
        int8 = EmbeddingModel(path, ["CPUExecutionProvider"])
        source = EmbeddingModel(floats[card.extra["quantization"]["source_sha256"]], ["CPUExecutionProvider"])
        chips = np.stack([align_face(face, ARCFACE_TEMPLATE, int8.input_kind) for face in faces])
        cosine = (int8.embed(chips) * source.embed(chips)).sum(axis=1)
        assert cosine.min() >= 0.998, (path.name, float(cosine.min()))


@pytest.mark.parametrize("model", sorted(embedding_cards()), ids=lambda path: path.name)
def test_every_face_model_card_tells_the_service_its_input_and_dimension(model):
    card = embedding_cards()[model]
    loaded = EmbeddingModel(model, ["CPUExecutionProvider"])
    assert loaded.input_kind.name == (card.input_kind or "arcface_112") and loaded.name == (card.name or model.stem)
    assert loaded.dim == (card.embedding_dim or loaded.dim) and str(loaded.dim) in card.task


def test_thresholds_are_calibrated_for_every_shipped_face_model():
    for model in embedding_cards():
        entry = json.loads(Settings().thresholds_file.read_text())[sha256_file(model)]
        # A stricter false-accept rate needs a higher similarity.
        assert entry["thresholds"]["0.001"] > entry["thresholds"]["0.01"], model.name


@pytest.mark.slow
def test_shipped_face_model_ranks_same_person_pairs_above_different_people():
    settings = Settings()
    model = EmbeddingModel(settings.embedding_model, ["CPUExecutionProvider"])
    detector = FaceDetector()
    embeddings, identities = [], []
    for person, paths in PEOPLE.items():
        for path in paths:
            image = decode_image(need(FACES / path).read_bytes())
            largest = max(detector.detect(image), key=lambda face: face.area)
            embeddings.append(model.embed(align_face(image, largest.landmarks, model.input_kind)[None], flip=True)[0])
            identities.append(person)
    same, different = [], []
    for i, j in itertools.combinations(range(len(identities)), 2):
        (same if identities[i] == identities[j] else different).append(float(embeddings[i] @ embeddings[j]))
    # ROC AUC over all pairs: 0.5 for a model that learned nothing.
    auc = np.mean([s > d for s in same for d in different])
    assert auc > 0.75, f"same-vs-different AUC {auc:.3f} (same {np.mean(same):.3f}, different {np.mean(different):.3f})"


EXPRESSION_MODELS = sorted(path for path in SHIPPED if ModelCard.read(path).task.startswith("facial expression"))


@pytest.mark.slow
@pytest.mark.parametrize("model", EXPRESSION_MODELS, ids=lambda path: path.name)
@pytest.mark.parametrize("flip", [False, True], ids=["none", "flip"])
def test_shipped_expression_model_scores_its_card_accuracy_on_private_test(flip, model):
    """Through the service's own ExpressionModel (fp16 widened to fp32 on the CPU provider, mirror
    TTA as the service's flip_expressions setting does), not the exporter's session: the number
    users get is the number on the card; for the default model and the int8 one STRA_EXPRESSION_MODEL selects."""
    assert Settings().expression_model in EXPRESSION_MODELS
    card = ModelCard.read(model)
    data = load_fer2013(need(FER2013))
    private = data.split("PrivateTest")
    model = ExpressionModel(model, ["CPUExecutionProvider"])
    predictions = np.concatenate(
        [
            model.probabilities(private.images[start : start + 512], flip).argmax(1)
            for start in range(0, len(private), 512)
        ]
    )
    accuracy = float((predictions == private.labels).mean())
    majority = np.bincount(private.labels).max() / len(private)
    card_accuracy = card.metrics["PrivateTest/" + ("flip" if flip else "none")]["accuracy"]
    assert accuracy == pytest.approx(card_accuracy, abs=0.003)
    assert accuracy > majority + 0.2, (
        f"PrivateTest accuracy {accuracy:.3f}; answering the majority class scores {majority:.3f}"
    )
    # The H100-trained 19-epoch ResNet50-StRA (docs/fer_gpu_runs): 65.6% without TTA, 66.6% with flip here.
    assert accuracy >= 0.653, f"PrivateTest accuracy {accuracy:.4f} below the shipped ResNet50-StRA's 65.3% floor"
    # The same predictions on the FER+ benchmark (majority of 10 annotators, ties and unknown / NF / contempt left out).
    votes = ferplus.read_votes(need(FER2013.with_name("ferplus_votes.npz")))
    majority = ferplus.majority_labels(votes)[data.usage == "PrivateTest"]
    kept = majority >= 0
    card_ferplus = card.extra["ferplus_metrics"]["PrivateTest/" + ("flip" if flip else "none")]
    assert kept.sum() == card_ferplus["images"]
    assert float((predictions[kept] == majority[kept]).mean()) == pytest.approx(card_ferplus["accuracy"], abs=0.003)


@pytest.mark.slow
def test_shipped_expression_model_is_stra_with_provenance_and_mode_maps():
    """The card says where an externally trained model comes from, and the file answers `?modes=true`."""
    settings = Settings()
    card = ModelCard.read(settings.expression_model)
    assert card.model["name"] == "resnet50_stra"
    assert {"code_revision", "hardware", "trained_with", "checkpoint_sha256"} <= set(card.provenance)
    assert (
        card.recipe["optimizer"] == "adamw"
        and card.extra["epochs_scheduled"] == 19
        and card.extra["epochs_trained"] == 18
    )
    assert "modes" in card.outputs
    model = ExpressionModel(settings.expression_model, ["CPUExecutionProvider"])
    crops = np.stack([np.full((48, 48), 128, np.uint8), np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (48, 1))])
    probabilities, maps = model.predict(crops, flip=True, modes=True)
    assert probabilities.shape == (2, 7) and maps.shape == (2, 8, 6, 6)
    assert 0.0 <= maps.min() and maps.max() <= 1.0 and np.abs(maps[0] - maps[1]).max() > 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("model", [None, *sorted(embedding_cards())], ids=lambda path: path.name if path else "default")
def test_default_model_tells_real_people_apart_through_the_api(tmp_path, model):
    """The issue's "done when": with the default model and its calibrated thresholds, /v1/verify says
    "same person" for two photos of one person and "different" for two people, at the default FAR; and
    so does every shipped face model chosen by STRA_EMBEDDING_MODEL (the int8 one with its own thresholds).
    A model whose card shows it below LFW 99% (the CPU-distilled student, documented as not for production)
    must still never call two people the same; that it misses same-person pairs is what its card says."""
    from fastapi.testclient import TestClient

    from stra_face.service.app import create_app

    same = [("obama", 0, 1), ("biden", 0, 1), ("kit_harington", 0, 1), ("rose_leslie", 0, 1), ("alex_lacamoire", 0, 1)]
    different = [
        ("obama", "biden"),
        ("kit_harington", "rose_leslie"),
        ("alex_lacamoire", "obama"),
        ("rose_leslie", "biden"),
    ]

    def photo(person: str, index: int = 0):
        path = need(FACES / PEOPLE[person][index])
        return (path.name, path.read_bytes())

    settings = Settings(gallery_path=tmp_path / "gallery.sqlite3", providers=["CPUExecutionProvider"])
    if model is not None:
        settings = Settings(**settings.model_dump() | {"embedding_model": model})
    with TestClient(create_app(settings)) as client:
        info = client.get("/v1/info").json()
        assert info["embedding_model"]["sha256"] == sha256_file(settings.embedding_model)
        answers = {}
        for person, i, j in same:
            body = client.post("/v1/verify", files={"image1": photo(person, i), "image2": photo(person, j)}).json()
            assert body["decision"]["far"] == settings.default_far
            answers[(person, person)] = (body["verified"], body["similarity"])
        for first, second in different:
            body = client.post("/v1/verify", files={"image1": photo(first), "image2": photo(second)}).json()
            answers[(first, second)] = (body["verified"], body["similarity"])
    card = ModelCard.read(settings.embedding_model)
    production = card.metrics["lfw"]["accuracy_mean"] >= 0.99
    checked = {pair: answer for pair, answer in answers.items() if production or pair[0] != pair[1]}
    wrong = {pair: answer for pair, answer in checked.items() if answer[0] != (pair[0] == pair[1])}
    assert not wrong, f"wrong decisions (verified, similarity): {wrong}"
