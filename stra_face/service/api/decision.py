"""The accept/reject threshold of a request: caller-given, or calibrated for a target FAR."""
from __future__ import annotations

from typing import Annotated

from fastapi import Query

from stra_face.service.api.deps import State
from stra_face.service.errors import APIError
from stra_face.service.schemas import Decision


def decision(
    state: State,
    far: Annotated[float | None, Query(gt=0, lt=1, description="target false-accept rate (server default when absent); the strictest calibrated FAR not above it is used; below the strictest calibrated FAR: 422")] = None,
    threshold: Annotated[float | None, Query(ge=-1, le=1, description="explicit cosine threshold; overrides far")] = None,
) -> Decision:
    if threshold is not None:
        return Decision(threshold=threshold, far=None, calibration="request")
    if state.calibration is None:
        raise APIError(
            503, "model_not_calibrated",
            f"no calibrated thresholds for embedding model {state.embedder.sha256[:12]} in {state.settings.thresholds_file}; pass ?threshold=",
        )
    supported = min(state.calibration.thresholds)
    if far is not None and far < supported:
        raise APIError(
            422, "far_out_of_range",
            f"far={far:g} is below the strictest calibrated FAR ({supported:g}); supported: far >= {supported:g} "
            f"(calibrated: {', '.join(f'{f:g}' for f in sorted(state.calibration.thresholds))}), or pass ?threshold=",
        )
    value, calibrated_far = state.calibration.threshold_for(far if far is not None else state.settings.default_far)
    return Decision(threshold=value, far=calibrated_far, calibration=state.calibration.source)
