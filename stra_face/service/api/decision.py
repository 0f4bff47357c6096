"""The accept/reject threshold of a request: caller-given, calibrated for a target FAR (1:1), or for a
target FPIR over the gallery's size (1:N, open set)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import Query

from stra_face.service.api.deps import State
from stra_face.service.errors import APIError
from stra_face.service.schemas import Decision
from stra_face.vision.thresholds import ThresholdError, choose_open_set_threshold, choose_threshold

Threshold = Annotated[float | None, Query(ge=-1, le=1, description="explicit cosine threshold; overrides far / fpir")]


def _decided(choose, *args, **kwargs) -> Decision:
    try:
        return Decision(**asdict(choose(*args, **kwargs)))
    except ThresholdError as error:
        raise APIError(error.status, error.code, error.message) from None


def decision(
    state: State,
    far: Annotated[
        float | None,
        Query(
            gt=0,
            lt=1,
            description=(
                "target false-accept rate (server default when absent); a value that is not calibrated is "
                "clamped to the strictest calibrated FAR not above it (`decision.clamped`); "
                "below the strictest calibrated FAR: 422"
            ),
        ),
    ] = None,
    threshold: Threshold = None,
) -> Decision:
    return _decided(
        choose_threshold,
        state.calibration,
        state.settings.default_far,
        far,
        threshold,
        model=state.embedder.sha256,
        source=str(state.settings.thresholds_file),
        override="pass ?threshold=",
    )


def open_set_decision(state: State, fpir: float | None, threshold: float | None, gallery_faces: int) -> Decision:
    return _decided(
        choose_open_set_threshold,
        state.calibration,
        state.settings.default_fpir if fpir is None else fpir,
        gallery_faces,
        threshold,
        model=state.embedder.sha256,
        source=str(state.settings.thresholds_file),
        override="pass ?threshold=",
    )


def far_at(state: State, similarity: float) -> float | None:
    return None if state.calibration is None else state.calibration.far_at_score(similarity)
