"""FER+ (Microsoft's relabelling of FER2013 by 10 annotators per image): votes, labels, the benchmark set.

Votes come in FER+'s own column order (FERPLUS_COLUMNS), which is not FER2013's; they are mapped
here onto `stra_face.vision.preprocess.EXPRESSIONS`, with contempt as an 8th class when asked for.

- Vote distributions ("probability", the FER+ paper's soft labels): the votes of the kept classes,
  normalised. unknown and not-a-face (NF) votes are dropped from the distribution, and so are
  contempt votes with 7 classes (contempt is dropped, not folded into another class).
- Majority ("majority", also the benchmark's labels): the class with the most of the 10 votes,
  counting unknown and NF. The image is left out when that top count is shared by two classes
  (a tie), or the top class is unknown, NF, or (7 classes) contempt.
- Images FER+ did not match, and images left with no vote for a kept class, are left out.

Votes are read from the shared `ferplus_votes.npz` (aligned to `fer2013_jpg.npz` row by row) or from
FER+'s own `fer2013new.csv`, which is aligned to the original `fer2013.csv` row by row.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stra_face.training.fer.config import LABEL_SETS  # noqa: F401 (ferplus.LABEL_SETS for its users)
from stra_face.training.fer.data import FerData
from stra_face.vision.preprocess import EXPRESSIONS

FERPLUS_COLUMNS = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
# FER+ column of each class, in EXPRESSIONS order, then contempt (the 8th class).
_COLUMN = {"angry": 4, "disgust": 5, "fear": 6, "happy": 1, "sad": 3, "surprise": 2, "neutral": 0, "contempt": 7}
MODES = ("probability", "majority")


def class_names(num_classes: int) -> tuple[str, ...]:
    if num_classes == len(EXPRESSIONS):
        return EXPRESSIONS
    if num_classes == len(EXPRESSIONS) + 1:
        return (*EXPRESSIONS, "contempt")
    raise ValueError(f"FER+ has 7 classes (FER2013's) or 8 (with contempt), not {num_classes}")


@dataclass
class FerPlusVotes:
    votes: np.ndarray  # (N, 10) vote counts in FERPLUS_COLUMNS order; row i belongs to image i of the FER2013 data
    matched: np.ndarray  # (N,) bool: images FER+ has votes for

    def __len__(self) -> int:
        return len(self.votes)


def read_votes_csv(path: Path) -> FerPlusVotes:
    """FER+'s fer2013new.csv (Usage, Image name, then the 10 vote columns); rows without an image
    name are FER+'s not-a-face rows and count as unmatched."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = [name for name in ("Image name", *FERPLUS_COLUMNS) if rows and name not in rows[0]]
    if not rows or missing:
        raise ValueError(f"{path}: expected FER+'s fer2013new.csv columns (missing {missing or 'every row'})")
    votes = np.array([[int(float(row[name] or 0)) for name in FERPLUS_COLUMNS] for row in rows], np.uint8)
    matched = np.array([bool(row["Image name"].strip()) for row in rows])
    return FerPlusVotes(votes, matched)


def read_votes(path: str | Path) -> FerPlusVotes:
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return read_votes_csv(path)
    with np.load(path) as archive:
        return FerPlusVotes(archive["votes"].astype(np.uint8), archive["matched"].astype(bool))


def write_votes(votes: FerPlusVotes, path: Path) -> None:
    """The npz layout `read_votes` reads (smoke runs write the votes of their sample with it)."""
    np.savez_compressed(path, votes=votes.votes, matched=votes.matched, classes=np.array(FERPLUS_COLUMNS))


def default_votes_path(data: str | Path) -> Path:
    """ferplus_votes.npz next to the FER2013 data (as in ../shared/data/fer2013)."""
    return Path(data).parent / "ferplus_votes.npz"


def _columns(num_classes: int) -> list[int]:
    return [_COLUMN[name] for name in class_names(num_classes)]


def majority_labels(votes: FerPlusVotes, num_classes: int = 7) -> np.ndarray:
    """(N,) class index of the majority vote, -1 where the image is left out (see the module doc)."""
    counts = votes.votes.astype(np.int64)
    top = counts.max(1)
    clear = (counts == top[:, None]).sum(1) == 1
    class_of_column = np.full(len(FERPLUS_COLUMNS), -1)
    class_of_column[_columns(num_classes)] = np.arange(num_classes)
    labels = class_of_column[counts.argmax(1)]
    return np.where(votes.matched & clear & (top > 0), labels, -1)


def vote_distributions(votes: FerPlusVotes, num_classes: int = 7) -> np.ndarray:
    """(N, num_classes) float32 share of the votes per class; all zero where the image is left out."""
    counts = votes.votes[:, _columns(num_classes)].astype(np.float32) * votes.matched[:, None]
    total = counts.sum(1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def relabel(data: FerData, votes: FerPlusVotes, mode: str = "majority", num_classes: int = 7) -> FerData:
    """`data` with FER+ labels, images without one left out. "probability" also sets `targets`
    (the vote distributions; `labels` is then their most-voted class, for accuracy while training)."""
    if len(votes) != len(data):
        raise ValueError(
            f"FER+ votes have {len(votes)} rows but the FER2013 data has {len(data)}: they must be aligned row by row"
        )
    if mode == "majority":
        labels = majority_labels(votes, num_classes)
        keep = labels >= 0
        return FerData(data.images[keep], labels[keep], data.usage[keep], classes=class_names(num_classes))
    if mode == "probability":
        targets = vote_distributions(votes, num_classes)
        keep = targets.sum(1) > 0
        return FerData(
            data.images[keep],
            targets[keep].argmax(1),
            data.usage[keep],
            targets=targets[keep],
            classes=class_names(num_classes),
        )
    raise ValueError(f"FER+ mode must be one of {MODES}, not {mode!r}")
