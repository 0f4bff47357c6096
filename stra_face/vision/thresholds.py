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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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
        threshold, table_far = [(t, f) for t, f in self.far_table if f <= far][-1]  # the first point (FAR 0) always qualifies
        return threshold, max(table_far, self.far_floor)


def load_calibration(path: Path, model_sha256: str) -> Calibration | None:
    if not path.exists():
        return None
    entry = json.loads(path.read_text()).get(model_sha256)
    if not entry:
        return None
    details = {key: entry[key] for key in ("model", "pairs", "genuine_pairs", "impostor_pairs", "tar_at_far") if key in entry}
    return Calibration(
        {float(far): float(t) for far, t in entry["thresholds"].items()}, entry.get("dataset", str(path)),
        tuple((float(s), float(f)) for s, f in entry.get("far_table", [])), {"file": str(path), **details},
    )
