"""Verification thresholds calibrated by the benchmark, keyed by the embedding model's sha256.

File format (written by `python -m stra_face.training.eval --calibrate`):
    {"<sha256>": {"model": "...", "dataset": "...", "pairs": 7000,
                  "thresholds": {"0.01": 0.31, "0.001": 0.42, "0.0001": 0.5}}}
FAR keys are decimal strings; values are cosine-similarity thresholds (similarity >= t accepts).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Calibration:
    thresholds: dict[float, float]  # FAR -> cosine threshold
    source: str

    def threshold_for(self, far: float) -> tuple[float, float]:
        """(threshold, calibrated FAR): the strictest calibrated FAR that is <= the target, so the
        promised false-accept rate is never looser than asked; the strictest one when all are looser."""
        eligible = [f for f in self.thresholds if f <= far]
        chosen = max(eligible) if eligible else min(self.thresholds)
        return self.thresholds[chosen], chosen


def load_calibration(path: Path, model_sha256: str) -> Calibration | None:
    if not path.exists():
        return None
    entry = json.loads(path.read_text()).get(model_sha256)
    if not entry:
        return None
    return Calibration({float(far): float(t) for far, t in entry["thresholds"].items()}, entry.get("dataset", str(path)))


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


def choose_threshold(
    calibration: Calibration | None, default_far: float, far: float | None = None, threshold: float | None = None,
    *, model: str = "", source: str = "", override: str = "pass threshold=",
) -> Choice:
    """The accept threshold of a verify / identify: the caller's, else the calibrated one for `far`
    (`default_far` when None). `model`, `source` (sha256, thresholds file) and `override` (how the
    caller passes a threshold) only word the errors."""
    if threshold is not None:
        return Choice(threshold, None, "request")
    if calibration is None:
        raise ThresholdError("model_not_calibrated", f"no calibrated thresholds for embedding model {model[:12]} in {source}; {override}", 503)
    supported = min(calibration.thresholds)
    if far is not None and far < supported:
        raise ThresholdError(
            "far_out_of_range",
            f"far={far:g} is below the strictest calibrated FAR ({supported:g}); supported: far >= {supported:g} "
            f"(calibrated: {', '.join(f'{f:g}' for f in sorted(calibration.thresholds))}), or {override}",
            422,
        )
    value, calibrated_far = calibration.threshold_for(far if far is not None else default_far)
    return Choice(value, calibrated_far, calibration.source)
