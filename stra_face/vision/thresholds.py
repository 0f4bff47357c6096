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
