"""StRA mode maps per face for the API: the r_ig grid of the expression model's last StRA block,
and an optional PNG overlay of each map on the 48x48 crop the model saw."""

from __future__ import annotations

import base64

import cv2
import numpy as np

from stra_face.service.schemas import ExpressionModes
from stra_face.vision.preprocess import EXPRESSION_SIZE

OVERLAY_SCALE = 2  # 48 px crops drawn at 96 px: readable, ~100 kB of base64 per face


def overlay_png(crop: np.ndarray, maps: np.ndarray) -> bytes:
    """One row: the crop, then each mode's map (jet colour map, 0 blue .. 1 red) blended over it."""
    size = EXPRESSION_SIZE * OVERLAY_SCALE
    face = cv2.cvtColor(cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR), cv2.COLOR_GRAY2BGR)
    panels = [face]
    for mode in maps:
        heat = cv2.resize(mode.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        colour = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
        panels.append(cv2.addWeighted(face, 0.5, colour, 0.5, 0))
    ok, png = cv2.imencode(".png", np.concatenate(panels, axis=1), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()


def face_modes(maps: np.ndarray, crop: np.ndarray, overlay: bool) -> ExpressionModes:
    """`maps` (G, h, w) of one face in [0, 1], `crop` its (48, 48) expression crop."""
    groups, rows, cols = maps.shape
    return ExpressionModes(
        groups=groups,
        grid=(rows, cols),
        cell_pixels=(EXPRESSION_SIZE / rows, EXPRESSION_SIZE / cols),
        maps=np.round(
            maps.astype(np.float64), 4
        ).tolist(),  # float64 first: float32 values would print with noise digits
        overlay_png=base64.b64encode(overlay_png(crop, maps)).decode("ascii") if overlay else None,
    )
