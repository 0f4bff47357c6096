"""The accept/reject threshold of a request: caller-given, or calibrated for a target FAR."""
from __future__ import annotations

from typing import Annotated

from fastapi import Query

from stra_face.service.api.deps import State
from stra_face.service.errors import APIError
from stra_face.service.schemas import Decision
from stra_face.vision.thresholds import ThresholdError, choose_threshold


def decision(
    state: State,
    far: Annotated[float | None, Query(gt=0, lt=1, description="target false-accept rate (server default when absent); the strictest calibrated FAR not above it is used; below the strictest calibrated FAR: 422")] = None,
    threshold: Annotated[float | None, Query(ge=-1, le=1, description="explicit cosine threshold; overrides far")] = None,
) -> Decision:
    try:
        chosen = choose_threshold(
            state.calibration, state.settings.default_far, far, threshold,
            model=state.embedder.sha256, source=str(state.settings.thresholds_file), override="pass ?threshold=",
        )
    except ThresholdError as error:
        raise APIError(error.status, error.code, error.message) from None
    return Decision(threshold=chosen.threshold, far=chosen.far, calibration=chosen.calibration)
