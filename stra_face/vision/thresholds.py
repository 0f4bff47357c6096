"""Verification thresholds calibrated per embedding model, keyed by the model's sha256.

File format (written by `python -m stra_face.training.eval --calibrate` and `stra-face calibrate`):
    {"<sha256>": {"model": "...", "dataset": "...", "pairs": 7000,
                  "thresholds": {"0.1": 0.9, "0.01": 0.93, "0.001": 0.94},
                  "far_table": [[score, far], ...],   # impostor scores, highest first (optional)
                  "impostor_pairs": 3500, "genuine_pairs": 3500, "tar_at_far": {...}}}
FAR keys are decimal strings; values are cosine-similarity thresholds (similarity >= t accepts).
`far_table` holds, at log-spaced ranks of the calibration's impostor scores, the score and the share
of impostor pairs at or above it: what `far_at_score` reads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CALIBRATION_FARS = (1e-1, 1e-2, 1e-3, 1e-4)  # the FARs a deployment may ask for (those the pairs can measure)
FAR_TABLE_POINTS = 64


@dataclass(frozen=True)
class Calibration:
    thresholds: dict[float, float]  # FAR -> cosine threshold
    source: str
    far_table: tuple[tuple[float, float], ...] = ()  # (score, FAR), score descending
    details: dict = field(default_factory=dict)  # pairs, impostor_pairs, tar_at_far, file: what /v1/info shows

    def threshold_for(self, far: float) -> tuple[float, float]:
        """(threshold, calibrated FAR): the strictest calibrated FAR that is <= the target, so the
        promised false-accept rate is never looser than asked; the strictest one when all are looser."""
        eligible = [f for f in self.thresholds if f <= far]
        chosen = max(eligible) if eligible else min(self.thresholds)
        return self.thresholds[chosen], chosen

    @property
    def far_floor(self) -> float | None:
        """The smallest nonzero FAR the calibration can tell: one impostor pair in all of them."""
        impostors = self.details.get("impostor_pairs")
        return 1.0 / impostors if impostors else None

    def far_at_score(self, score: float) -> float | None:
        """Share of the calibration's impostor pairs scoring at or above `score`: the FAR of a threshold
        set just at this score. Exact at the table's thresholds; between them, the FAR of the next one
        down (an upper bound: the table's points are ~14% apart further down). Never below the floor
        (1 / impostor pairs: "at most that"). None without a table."""
        if not self.far_table or not self.far_floor:
            return None
        thresholds = np.array([t for t, _ in self.far_table])
        below = int(np.sum(thresholds > score))  # table thresholds above this score
        far = self.far_table[below][1] if below < len(self.far_table) else 1.0
        return max(far, self.far_floor)

    def threshold_at_far(self, far: float) -> tuple[float, float] | None:
        """(threshold, its FAR): the lowest table threshold whose FAR is <= far, and that FAR (raised to
        the floor when no impostor passes it). None without a table."""
        if not self.far_table or not self.far_floor:
            return None
        threshold, table_far = [(t, f) for t, f in self.far_table if f <= far][
            -1
        ]  # the first point (FAR 0) always qualifies
        return threshold, max(table_far, self.far_floor)


def load_calibration(path: Path, model_sha256: str) -> Calibration | None:
    if not path.exists():
        return None
    entry = json.loads(path.read_text()).get(model_sha256)
    if not entry:
        return None
    details = {
        key: entry[key] for key in ("model", "pairs", "genuine_pairs", "impostor_pairs", "tar_at_far") if key in entry
    }
    return Calibration(
        {float(far): float(t) for far, t in entry["thresholds"].items()},
        entry.get("dataset", str(path)),
        tuple((float(s), float(f)) for s, f in entry.get("far_table", [])),
        {"file": str(path), **details},
    )


# --------------------------------------------------------------------------- computing a calibration


def roc_curve(similarities: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FAR, TAR, threshold) for every distinct similarity, accepting similarity >= threshold."""
    order = np.argsort(-similarities, kind="stable")
    scores, labels = similarities[order], issame[order]
    tar = np.cumsum(labels) / max(1, labels.sum())
    far = np.cumsum(~labels) / max(1, (~labels).sum())
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    return far[last_of_tie], tar[last_of_tie], scores[last_of_tie]


def threshold_at_far(similarities: np.ndarray, issame: np.ndarray, far: float) -> float | None:
    """Lowest cosine threshold whose false-accept rate over the impostor pairs is <= far; None if
    there are fewer than 1/far impostor pairs (the FAR cannot be measured)."""
    impostors = np.sort(similarities[~issame])[::-1]
    if len(impostors) < round(1 / far):
        return None
    allowed = int(np.floor(far * len(impostors)))  # impostors that may be accepted
    # accept strictly above the (allowed+1)-th highest impostor score
    return float(np.nextafter(impostors[allowed], np.inf))


def far_table(similarities: np.ndarray, issame: np.ndarray, points: int = FAR_TABLE_POINTS) -> list[list[float]]:
    """[(threshold, FAR)] at log-spaced ranks r of the impostor scores, highest threshold first: accepting
    similarity >= threshold (just above the r-th highest impostor) lets exactly (r - 1) / impostors through,
    as `threshold_at_far` does. From FAR 0 (above every impostor) to (n - 1) / n."""
    impostors = np.sort(similarities[~issame])[::-1]
    ranks = np.round(np.logspace(0, np.log10(len(impostors)), points)).astype(int)
    exact = [
        int(np.floor(far * len(impostors))) + 1 for far in CALIBRATION_FARS if far * len(impostors) >= 1
    ]  # threshold_at_far's ranks
    ranks = np.unique(np.r_[ranks, exact])
    return [[float(np.nextafter(impostors[rank - 1], np.inf)), float((rank - 1) / len(impostors))] for rank in ranks]


def calibration_entry(similarities: np.ndarray, issame: np.ndarray, fars=CALIBRATION_FARS) -> dict:
    """A thresholds-file entry: FAR -> cosine threshold for every FAR the impostor pairs can measure,
    the FAR table that `far_at_score` reads, and the TAR each threshold gives on the genuine pairs."""
    thresholds = {f"{far:g}": threshold_at_far(similarities, issame, far) for far in fars}
    thresholds = {far: t for far, t in thresholds.items() if t is not None}
    return {
        "thresholds": thresholds,
        "tar_at_far": {far: float(np.mean(similarities[issame] >= t)) for far, t in thresholds.items()},
        "far_table": far_table(similarities, issame),
        "genuine_pairs": int(issame.sum()),
        "impostor_pairs": int((~issame).sum()),
    }


def write_thresholds(path: Path, sha256: str, entry: dict) -> None:
    """Adds/replaces this model's entry; other models' calibrations stay."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data[sha256] = {**data.get(sha256, {}), **entry}  # keys this run does not compute stay
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


class ThresholdError(ValueError):
    """No threshold can be chosen as asked; `code` and `status` map onto the HTTP error."""

    def __init__(self, code: str, message: str, status: int):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Choice:
    threshold: float
    far: float | None  # the calibrated FAR the threshold stands for; None for a caller-given threshold
    calibration: str  # where the threshold comes from: "request", or the calibration's source
    requested_far: float | None = None  # the FAR asked for (the default when none was; 1:N: FPIR / gallery_faces)
    clamped: bool = False  # the FAR / FPIR asked for cannot be met exactly: `far` / `fpir` say what is used
    fpir: float | None = None  # 1:N only: the FPIR the threshold gives, ~ gallery_faces * far
    requested_fpir: float | None = None
    gallery_faces: int | None = None


def choose_threshold(
    calibration: Calibration | None,
    default_far: float,
    far: float | None = None,
    threshold: float | None = None,
    *,
    model: str = "",
    source: str = "",
    override: str = "pass threshold=",
) -> Choice:
    """The accept threshold of a verify / identify: the caller's, else the calibrated one for `far`
    (`default_far` when None). `model`, `source` (sha256, thresholds file) and `override` (how the
    caller passes a threshold) only word the errors."""
    if threshold is not None:
        return Choice(threshold, None, "request")
    if calibration is None:
        raise ThresholdError(
            "model_not_calibrated",
            f"no calibrated thresholds for embedding model {model[:12]} in {source}; {override}",
            503,
        )
    supported = min(calibration.thresholds)
    if far is not None and far < supported:
        raise ThresholdError(
            "far_out_of_range",
            f"far={far:g} is below the strictest calibrated FAR ({supported:g}); supported: far >= {supported:g} "
            f"(calibrated: {', '.join(f'{f:g}' for f in sorted(calibration.thresholds))}), or {override}",
            422,
        )
    requested = far if far is not None else default_far
    value, calibrated_far = calibration.threshold_for(requested)
    return Choice(
        value, calibrated_far, calibration.source, requested, not math.isclose(requested, calibrated_far, rel_tol=1e-6)
    )


def choose_open_set_threshold(
    calibration: Calibration | None,
    fpir: float,
    gallery_faces: int,
    threshold: float | None = None,
    *,
    model: str = "",
    source: str = "",
    override: str = "pass threshold=",
) -> Choice:
    """The threshold at which a probe of someone not enrolled matches any of the N gallery faces with
    probability FPIR: each comparison at FAR = FPIR / N (the union bound, 1 - (1 - FAR)^N <= N * FAR,
    treating the N comparisons as independent), read from the calibration's impostor table. Clamped
    to the table's floor (1 / impostor pairs) when FPIR / N is below it; `fpir` then states the FPIR
    that gives (N * floor), above the one asked."""
    if threshold is not None:
        return Choice(threshold, None, "request", gallery_faces=gallery_faces)
    if calibration is None:
        raise ThresholdError(
            "model_not_calibrated",
            f"no calibrated thresholds for embedding model {model[:12]} in {source}; {override}",
            503,
        )
    per_comparison = fpir / max(1, gallery_faces)
    at_table = calibration.threshold_at_far(per_comparison)
    value, far = (
        at_table if at_table is not None else calibration.threshold_for(per_comparison)
    )  # no table: its discrete FARs
    return Choice(
        value,
        far,
        calibration.source,
        per_comparison,
        far > per_comparison * (1 + 1e-6),
        min(1.0, far * max(1, gallery_faces)),
        fpir,
        gallery_faces,
    )
