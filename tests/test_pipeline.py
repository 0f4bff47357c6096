"""Image pipeline: decoding limits, EXIF, detection on real photos, alignment geometry."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import FACES, need
from stra_face.vision.align import (
    ARCFACE_TEMPLATE,
    DLIB_CHIP_TEMPLATE,
    align_face,
    expression_crop,
    similarity_transform,
)
from stra_face.vision.decode import ImageError, decode_image
from stra_face.vision.preprocess import DLIB_CHIP_150


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid greyscale PNG of width x height zero pixels: ~1 MB on disk, 900 MB decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    compressor = zlib.compressobj(1)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return png_bomb()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_decodes_supported_formats_to_rgb(fmt):
    image = Image.new("RGB", (64, 48), (200, 30, 10))
    decoded = decode_image(encode(image, fmt))
    assert decoded.shape == (48, 64, 3) and decoded.dtype == np.uint8
    assert abs(int(decoded[10, 10, 0]) - 200) < 8 and decoded[10, 10, 1] < 50


def test_alpha_and_grey_images_become_rgb():
    assert decode_image(encode(Image.new("RGBA", (20, 10), (1, 2, 3, 0)), "PNG")).shape == (10, 20, 3)
    assert decode_image(encode(Image.new("L", (20, 10), 7), "PNG")).shape == (10, 20, 3)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    decoded = decode_image(encode(image, "JPEG", exif=exif.tobytes()))
    assert decoded.shape[:2] == (60, 20)


@pytest.mark.parametrize(
    "data, code, status",
    [
        (b"", "empty_image", 422),
        (b"just some text, not a picture", "invalid_image", 415),
        (encode(Image.new("RGB", (8, 8)), "GIF"), "unsupported_image_format", 415),
    ],
)
def test_rejects_bad_bytes(data, code, status):
    with pytest.raises(ImageError) as error:
        decode_image(data)
    assert (error.value.code, error.value.status) == (code, status)


def test_rejects_truncated_jpeg():
    data = encode(Image.effect_noise((256, 256), 60).convert("RGB"), "JPEG")
    with pytest.raises(ImageError) as error:
        decode_image(data[: len(data) // 2])
    assert error.value.code == "corrupt_image" and error.value.status == 422


def test_rejects_byte_limit_before_decoding():
    with pytest.raises(ImageError) as error:
        decode_image(b"\xff" * 2000, max_bytes=1000)
    assert error.value.status == 413


def test_rejects_decompression_bomb_from_its_header(bomb):
    assert len(bomb) < 10 * 2**20
    with pytest.raises(ImageError) as error:
        decode_image(bomb)
    assert error.value.code == "image_too_large" and error.value.status == 413


def test_similarity_transform_maps_template_landmarks_exactly():
    angle, scale, shift = np.deg2rad(20), 2.5, np.array([40.0, 70.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = ARCFACE_TEMPLATE @ rotation.T + shift  # a rotated, scaled, shifted face
    matrix = similarity_transform(landmarks)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, ARCFACE_TEMPLATE, atol=1e-3)


@pytest.mark.parametrize("scale", [0.8, 4.0], ids=["small-face", "large-face-antialiased"])
def test_dlib_chip_puts_the_landmarks_on_its_template(scale):
    """A face's 5 landmarks (drawn as dots) land on DLIB_CHIP_TEMPLATE in the 150x150 chip, also when
    a large face is shrunk by area first (the antialiasing path must keep the geometry)."""
    image = np.zeros((1000, 900, 3), np.uint8)
    landmarks = DLIB_CHIP_TEMPLATE * scale + np.array([130.0, 170.0])
    for x, y in landmarks:
        cv2.circle(image, (round(x), round(y)), round(3 * scale), (255, 255, 255), -1)
    chip = align_face(image, landmarks, DLIB_CHIP_150)
    assert chip.shape == (150, 150, 3)
    grey = chip[..., 0].astype(np.float32)
    for x, y in DLIB_CHIP_TEMPLATE:
        ys, xs = np.mgrid[round(y) - 6 : round(y) + 7, round(x) - 6 : round(x) + 7]
        weights = grey[ys, xs]
        centre = np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()
        assert np.abs(centre - (x, y)).max() < 0.75, (scale, centre, (x, y))


def test_align_and_expression_crop_shapes():
    image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    landmarks = ARCFACE_TEMPLATE * 2 + 50
    assert align_face(image, landmarks).shape == (112, 112, 3)
    crop = expression_crop(image, landmarks)
    assert crop.shape == (48, 48) and crop.dtype == np.uint8


@pytest.fixture(scope="module")
def detector():
    from stra_face.vision.detect import FaceDetector

    return FaceDetector()


@pytest.mark.parametrize(
    "path, faces",
    [
        ("examples/obama-720p.jpg", 1),
        ("examples/two_people.jpg", 2),
        ("more/insightface/t1.jpg", 6),
        ("tests/test_images/32bit.png", 1),
    ],
)
def test_mtcnn_finds_every_face_in_real_photos(detector, path, faces):
    image = decode_image(need(FACES / path).read_bytes())
    # At 20 px as the reference runs: the 720p photo's default smallest face (30 px) also finds a
    # 0.902-score false face that facenet-pytorch finds at that size too.
    detections = detector.detect(image, 20)
    assert len(detections) == faces
    for detection in detections:
        x1, y1, x2, y2 = detection.box
        assert 0.9 <= detection.score <= 1.0
        # eyes above the mouth, every landmark inside its box (with a little slack)
        assert detection.landmarks[:2, 1].max() < detection.landmarks[3:, 1].min()
        assert np.all((detection.landmarks >= [x1 - 5, y1 - 5]) & (detection.landmarks <= [x2 + 5, y2 + 5]))
    areas = [d.area for d in detections]
    assert areas == sorted(areas, reverse=True)


def test_group_photo_main_faces_come_first(detector):
    """obama_and_biden.jpg: the two adults, then a child's face at the edge (a real third face)."""
    image = decode_image(need(FACES / "examples/knn_examples/test/obama_and_biden.jpg").read_bytes())
    detections = detector.detect(image)
    assert len(detections) >= 3
    assert min(d.area for d in detections[:2]) > 1.5 * detections[2].area
    assert sorted(d.box[0] < image.shape[1] / 2 for d in detections[:2]) == [False, True]  # one left, one right


def test_detection_agrees_with_facenet_reference_crops(detector):
    """The facenet-pytorch project's own aligned crops came from the same detector: a face is found in each portrait."""
    folder = need(FACES / "more" / "test_images")
    for portrait in sorted(folder.glob("*/1.jpg")):
        assert len(detector.detect(decode_image(portrait.read_bytes()))) >= 1, portrait


def test_no_face_in_a_blank_image(detector):
    assert detector.detect(np.full((200, 200, 3), 128, np.uint8)) == []
