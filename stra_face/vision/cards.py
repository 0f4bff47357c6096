"""The model card: what an ONNX file is, how it reads its input, how it was made and how well it does.

A card is JSON beside its model (`expression.onnx` -> `expression.card.json`; the three MTCNN files
share `mtcnn.card.json`). Training writes it once, when the file is exported, and everything else
(the service, the benchmarks, the tests) reads it through `ModelCard`. The schema names the fields
code relies on; what a card says beyond them (a recipe's notes, a parity report) rides along in
`extra` and is written back unchanged, so reading and writing a card keeps its JSON keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CARD_SUFFIX = ".card.json"


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def card_path(model_path: Path) -> Path:
    """Where the card of a model file lives: `<stem>.card.json` beside it."""
    return Path(model_path).with_suffix(CARD_SUFFIX)


@dataclass
class ModelCard:
    """One model card. None = not on this card (not written)."""

    task: str  # what the model does, in words; face models start with "face embedding (<dim>-d"
    # the file: name beside the card, its digest (thresholds.json is keyed by it) and size
    file: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    files: dict | None = None  # several files under one card (MTCNN): name -> {file, sha256, size_bytes, ...}
    precision: str | None = None  # fp16 / fp32 weights
    # how to feed it: the service reads `input_kind` (an aligned-face kind) and `embedding_dim`
    name: str | None = None
    input_kind: str | None = None
    embedding_dim: int | None = None
    input: str | None = None
    output: str | None = None
    outputs: dict | str | None = None
    parity_max_abs_error: float | None = None  # exported file against the PyTorch model, random inputs
    # how it was made: the network, the recipe, the data, and where it ran
    model: dict | None = None
    recipe: dict | str | None = None
    data: dict | str | None = None
    code_revision: str | None = None
    hardware: str | None = None
    provenance: dict | None = None  # a checkpoint trained elsewhere: its file, digest, revision, hardware, command
    training_minutes: float | None = None
    # how well it does, and how to measure that again
    metrics: dict | None = None  # benchmark -> its figures, measured on the exported file itself
    thresholds: str | None = None
    limitations: str | None = None
    reproduce: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> ModelCard:
        """A card from its JSON object; a known field of the wrong type is a ValueError."""
        known = {f.name: f for f in dataclasses.fields(cls) if f.name != "extra"}
        if "task" not in data:
            raise ValueError("a model card needs a `task`")
        hints = typing.get_type_hints(cls)
        for key in known.keys() & data.keys():
            value, accepted = data[key], hints[key]
            if accepted == float | None:
                accepted = float | int | None  # JSON writes 0.0 back as 0 in some writers
            if not isinstance(value, accepted):
                raise ValueError(f"model card field {key!r}: {type(value).__name__} where {accepted} is expected")
        return cls(
            **{k: v for k, v in data.items() if k in known}, extra={k: v for k, v in data.items() if k not in known}
        )

    def to_dict(self) -> dict:
        """The JSON object: the fields this card has (None ones left out), then its extra keys."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {k: v for k, v in fields.items() if v is not None} | self.extra

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        """A card file, or the card of a model file (`x.onnx` -> `x.card.json`)."""
        path = Path(path)
        return cls.from_dict(json.loads((path if path.name.endswith(CARD_SUFFIX) else card_path(path)).read_text()))

    @classmethod
    def beside(cls, model_path: Path) -> ModelCard | None:
        """The card of a model file, None when it has none."""
        return cls.read(model_path) if card_path(model_path).exists() else None

    def write(self, path: Path) -> Path:
        """Writes the card (to a card path, or beside a model file); returns where."""
        path = Path(path)
        path = path if path.name.endswith(CARD_SUFFIX) else card_path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def file_facts(path: Path) -> dict:
    """The card's `file`, `sha256` and `size_bytes` of an exported file."""
    path = Path(path)
    return {"file": path.name, "sha256": sha256_file(path), "size_bytes": path.stat().st_size}
