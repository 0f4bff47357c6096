"""What may reach the face detector: checked at the pipeline's entry, whatever detector runs behind it.

A detector scans windows of a fixed size over an image pyramid; an image whose shorter side is
below the smallest face searched for (the request's `min_face_size`, or the detector's floor for
that image), or below the smallest window, holds no detectable face. Such images answer the
no-face behaviour (an empty face list; a 422 `no_face` on routes that need a face) instead of
reaching the detector.
"""

from __future__ import annotations

SMALLEST_WINDOW = 12  # pixels: MTCNN's P-Net window, and no useful face is smaller


def can_hold_a_face(height: int, width: int, smallest_face: float) -> bool:
    return min(height, width) >= max(SMALLEST_WINDOW, smallest_face)
