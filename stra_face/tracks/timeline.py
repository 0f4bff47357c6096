"""A track's expression timeline: per-frame probabilities, smoothed over time, cut into segments."""

from __future__ import annotations

import numpy as np


def smooth(times: np.ndarray, probabilities: np.ndarray, window_s: float) -> np.ndarray:
    """Mean of the probabilities within +-window_s/2 of each sample (samples may be unevenly spaced:
    a track is observed only on detection frames, and not on all of them)."""
    times = np.asarray(times, np.float64)
    probabilities = np.asarray(probabilities, np.float64)
    if len(times) == 0 or window_s <= 0:
        return probabilities.astype(np.float32)
    cumulative = np.vstack([np.zeros((1, probabilities.shape[1])), np.cumsum(probabilities, axis=0)])
    start = np.searchsorted(times, times - window_s / 2, side="left")
    stop = np.searchsorted(times, times + window_s / 2, side="right")
    return ((cumulative[stop] - cumulative[start]) / (stop - start)[:, None]).astype(np.float32)


def segments(frames: np.ndarray, labels: np.ndarray, min_samples: int) -> list[tuple[int, int, int]]:
    """Runs of equal labels as (first frame, last frame, label); runs shorter than `min_samples`
    samples join the run before them (the first run, the one after), so a flicker is no segment."""
    runs: list[list[int]] = []  # [first sample, last sample, label]
    for index, label in enumerate(np.asarray(labels).tolist()):
        if runs and runs[-1][2] == label:
            runs[-1][1] = index
        else:
            runs.append([index, index, label])
    merged: list[list[int]] = []
    for run in runs:
        short = run[1] - run[0] + 1 < min_samples
        if merged and (short or merged[-1][2] == run[2]):
            merged[-1][1] = run[1]
        elif merged and merged[-1][1] - merged[-1][0] + 1 < min_samples:
            merged[-1] = [merged[-1][0], run[1], run[2]]  # a short first run joins the one after it
        else:
            merged.append(run)
    return [(int(frames[a]), int(frames[b]), int(label)) for a, b, label in merged]
