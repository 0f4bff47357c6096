"""The service's expression crop reproduces FER2013's framing (stra_face.vision.align.expression_crop)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import SHARED_DATA, need
from stra_face.vision.align import FER2013_TEMPLATE, expression_crop


@pytest.mark.parametrize("scale", [1.0, 3.0, 7.5])  # the face at 48 px, and larger: area-resampled path
def test_landmarks_land_on_the_fer2013_template(scale):
    angle = np.deg2rad(15)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = FER2013_TEMPLATE @ rotation.T + [60.0, 40.0]
    size = int(scale * 48 + 120)
    image = np.zeros((size, size, 3), np.uint8)
    for x, y in landmarks:  # a bright disc per landmark (sub-pixel centre: shift=4), radius ~ face size
        cv2.circle(
            image,
            (round(x * 16), round(y * 16)),
            round(1.2 * scale * 16),
            (255, 255, 255),
            -1,
            lineType=cv2.LINE_AA,
            shift=4,
        )
    crop = expression_crop(image, landmarks).astype(np.float64)
    assert crop.shape == (48, 48)
    for x, y in FER2013_TEMPLATE:  # each disc's brightness centroid sits on its template point
        x0, y0 = int(x) - 3, int(y) - 3
        window = crop[y0 : y0 + 8, x0 : x0 + 8]
        ys, xs = np.mgrid[y0 : y0 + 8, x0 : x0 + 8]
        assert window.sum() > 0
        assert abs((window * xs).sum() / window.sum() - x) < 0.5 and abs((window * ys).sum() / window.sum() - y) < 0.5


@pytest.mark.slow
def test_fer2013_images_through_the_service_path_come_back_close_to_themselves():
    """Upscaled FER2013 test images, detected and re-cropped by the service, match the originals
    better with the measured template than with the ArcFace-zoom crop the service used before."""
    from benchmarks.fer_crop_geometry import detect_padded, legacy_expression_crop, upscale
    from stra_face.training.fer.data import load_fer2013
    from stra_face.vision.detect import FaceDetector

    private = load_fer2013(need(SHARED_DATA / "fer2013" / "fer2013_jpg.npz")).split("PrivateTest").sample(24, seed=1)
    detector = FaceDetector()
    new_error, old_error = [], []
    for image in private.images:
        large = upscale(image)
        landmarks = detect_padded(detector, large)
        if landmarks is None:
            continue
        new_error.append(np.abs(expression_crop(large, landmarks).astype(int) - image).mean())
        old_error.append(np.abs(legacy_expression_crop(large, landmarks).astype(int) - image).mean())
    assert len(new_error) >= 18  # ~90% are found
    assert np.median(new_error) < 0.8 * np.median(old_error)  # measured: ~28 against ~45 grey levels
