"""The accept/reject threshold of a request: caller-given, calibrated for a target FAR (1:1), or for a
target FPIR over the gallery's size (1:N, open set)."""
from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from fastapi import Query
from scipy.optimize import linear_sum_assignment

from stra_face.service.api.deps import State
from stra_face.service.errors import APIError
from stra_face.service.schemas import Decision
from stra_face.vision.thresholds import Calibration

NOT_A_MATCH = -2.0  # below any cosine similarity: a face-subject pair under the threshold
Threshold = Annotated[float | None, Query(ge=-1, le=1, description="explicit cosine threshold; overrides far / fpir")]


def _calibration(state: State) -> Calibration:
    if state.calibration is None:
        raise APIError(
            503, "model_not_calibrated",
            f"no calibrated thresholds for embedding model {state.embedder.sha256[:12]} in {state.settings.thresholds_file}; pass ?threshold=",
        )
    return state.calibration


def decision(
    state: State,
    far: Annotated[float | None, Query(gt=0, lt=1, description="target false-accept rate (server default when absent); a value that is not calibrated is clamped to the strictest calibrated FAR not above it (`decision.clamped`); below the strictest calibrated FAR: 422")] = None,
    threshold: Threshold = None,
) -> Decision:
    if threshold is not None:
        return Decision(threshold=threshold, far=None, calibration="request")
    calibration = _calibration(state)
    supported = min(calibration.thresholds)
    if far is not None and far < supported:
        raise APIError(
            422, "far_out_of_range",
            f"far={far:g} is below the strictest calibrated FAR ({supported:g}); supported: far >= {supported:g} "
            f"(calibrated: {', '.join(f'{f:g}' for f in sorted(calibration.thresholds))}), or pass ?threshold=",
        )
    requested = far if far is not None else state.settings.default_far
    value, calibrated_far = calibration.threshold_for(requested)
    return Decision(
        threshold=value, far=calibrated_far, requested_far=requested, clamped=not math.isclose(requested, calibrated_far, rel_tol=1e-6),
        calibration=calibration.source,
    )


def open_set_decision(state: State, fpir: float, gallery_faces: int) -> Decision:
    """The threshold at which a probe of someone not enrolled matches any of the N gallery faces with
    probability FPIR: each comparison at FAR = FPIR / N (the union bound, 1 - (1 - FAR)^N <= N * FAR,
    treating the N comparisons as independent). Clamped to the calibration's floor (1 / impostor pairs)
    when FPIR / N is below it; `fpir` then states the FPIR the floor gives (N * floor), above the one asked."""
    calibration = _calibration(state)
    per_comparison = fpir / max(1, gallery_faces)
    at_table = calibration.threshold_at_far(per_comparison)
    if at_table is None:  # a calibration without an impostor table: its discrete FARs
        value, far = calibration.threshold_for(per_comparison)
    else:
        value, far = at_table
    stated = min(1.0, far * max(1, gallery_faces))
    return Decision(
        threshold=value, far=far, requested_far=per_comparison, clamped=far > per_comparison * (1 + 1e-6),
        calibration=calibration.source, fpir=stated, requested_fpir=fpir, gallery_faces=gallery_faces,
    )


def far_at(state: State, similarity: float) -> float | None:
    return None if state.calibration is None else state.calibration.far_at_score(similarity)


def assign_subjects(candidates: list[list], threshold: float) -> list[str | None]:
    """Per face of one photo, the subject it is (None: unknown). One person appears once in a photo, so
    faces and accepted candidates are matched one-to-one for the highest total similarity (Hungarian
    assignment); a face left without an accepted candidate is unknown."""
    subjects = sorted({m.subject_id for matches in candidates for m in matches if m.similarity >= threshold})
    if not subjects:
        return [None] * len(candidates)
    column = {subject: j for j, subject in enumerate(subjects)}
    similarity = np.full((len(candidates), len(subjects)), NOT_A_MATCH)
    for i, matches in enumerate(candidates):
        for m in matches:
            if m.similarity >= threshold:
                similarity[i, column[m.subject_id]] = m.similarity
    assigned: list[str | None] = [None] * len(candidates)
    for i, j in zip(*linear_sum_assignment(similarity, maximize=True)):
        if similarity[i, j] > NOT_A_MATCH:
            assigned[i] = subjects[j]
    return assigned
