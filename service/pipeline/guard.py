"""What may reach the face detector: checked at the pipeline's entry, whatever detector runs behind it.

A detector scans windows of a fixed size over an image pyramid; an image whose shorter side
(after the service's downscale to `max_side`) is below the smallest face asked for, or below the
smallest window, holds no detectable face. Such images answer the no-face behaviour (an empty
face list; a 422 `no_face` on routes that need a face) instead of reaching the detector, which
could not build a pyramid for them.
"""
from __future__ import annotations

SMALLEST_WINDOW = 12  # pixels: MTCNN's P-Net window, and no useful face is smaller


def can_hold_a_face(height: int, width: int, min_face_size: int, max_side: int) -> bool:
    scale = min(1.0, max_side / max(height, width))
    return min(height, width) * scale >= SMALLEST_WINDOW and min(height, width) >= min_face_size
