"""The model-card schema: every card that ships reads into it and writes back the same JSON; wrong
field types are refused; keys the schema does not name travel in `extra`."""

from __future__ import annotations

import json

import pytest

from stra_face.service.settings import ASSETS
from stra_face.vision.cards import ModelCard, card_path, file_facts, sha256_file

CARDS = sorted(ASSETS.glob("*.card.json"))


def test_every_model_that_ships_has_a_card():
    assert {path.name for path in CARDS} >= {"dlib_resnet_v1.card.json", "expression.card.json", "mtcnn.card.json"}


@pytest.mark.parametrize("path", CARDS, ids=lambda path: path.name)
def test_shipped_card_reads_into_the_schema_and_writes_the_same_json(path, tmp_path):
    raw = json.loads(path.read_text())
    card = ModelCard.read(path)
    assert card.task == raw["task"] and card.to_dict() == raw
    assert set(card.extra) < set(raw), "every card has fields the schema names"
    written = card.write(tmp_path / path.name)
    assert json.loads(written.read_text()) == raw


def test_a_card_is_found_beside_its_model(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not really onnx")
    assert ModelCard.beside(model) is None
    card = ModelCard(
        task="face embedding (4-d)",
        **file_facts(model),
        input_kind="arcface_112",
        embedding_dim=4,
        extra={"note": {"any": ["json"]}, "parity_with_dlib": None},
    )
    assert card.write(model) == card_path(model) == tmp_path / "m.card.json"
    again = ModelCard.beside(model)
    assert again == card and again.sha256 == sha256_file(model) and again.size_bytes == len(b"not really onnx")
    assert "metrics" not in json.loads(card_path(model).read_text()), "fields a card does not have are not written"
    assert json.loads(card_path(model).read_text())["parity_with_dlib"] is None, "an extra null stays"


@pytest.mark.parametrize(
    ("field", "value"), [("sha256", 12), ("size_bytes", "12"), ("metrics", [0.9]), ("embedding_dim", 1.5)]
)
def test_a_field_of_the_wrong_type_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        ModelCard.from_dict({"task": "x", field: value})


def test_a_card_without_a_task_is_refused():
    with pytest.raises(ValueError, match="task"):
        ModelCard.from_dict({"file": "m.onnx"})


def test_an_integer_where_a_float_is_expected_is_accepted():
    assert ModelCard.from_dict({"task": "x", "parity_max_abs_error": 0}).parity_max_abs_error == 0
