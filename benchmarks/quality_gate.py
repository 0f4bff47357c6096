"""What the face-quality gate drops on real photos: per folder, detections kept and dropped, per reason.

    PYTHONPATH=$PWD python benchmarks/quality_gate.py ../shared/data/faces ../shared/data/lfw/raw_sample \
        ../shared/data/cfp/raw_sample --crops runs/quality_crops.png

Every image is run through the service's detector (its default threshold and sizes). Dropped faces
are written, 112x112 and captioned with their reasons, into one contact sheet to judge by eye which
were faces (lost) and which were not (false faces removed).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from stra_face.service.settings import Settings
from stra_face.vision.align import align_face
from stra_face.vision.decode import decode_image
from stra_face.vision.detect import FaceDetector
from stra_face.vision.quality import assess

IMAGES = {".jpg", ".jpeg", ".png"}


def contact_sheet(crops: list[tuple[np.ndarray, str]], path: Path, columns: int = 8) -> None:
    tiles = []
    for crop, caption in crops:
        tile = cv2.copyMakeBorder(
            cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), 0, 24, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255)
        )
        for line, text in enumerate((caption[:18], caption[18:36])):
            cv2.putText(tile, text, (2, 122 + 10 * line), cv2.FONT_HERSHEY_PLAIN, 0.7, (0, 0, 0), 1)
        tiles.append(tile)
    tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % columns)
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack(rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--crops", type=Path, help="contact sheet (PNG) of the dropped faces")
    args = parser.parse_args(argv)
    settings = Settings()
    detector = FaceDetector(settings.min_face_size, settings.detection_threshold, settings.detection_size)
    dropped_crops = []
    for folder in args.folders:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGES)
        found, kept, reasons = 0, 0, Counter()
        for file in files:
            try:
                image = decode_image(file.read_bytes(), settings.max_image_bytes, settings.max_image_pixels)
            except ValueError:
                continue
            for detection in detector.detect(image):
                found += 1
                quality = assess(image, detection)
                kept += quality.passed
                reasons.update(quality.reasons)
                if not quality.passed:
                    caption = f"{file.stem[:10]} {','.join(r.split('_')[-1] for r in quality.reasons)}"
                    dropped_crops.append((align_face(image, detection.landmarks), caption))
        print(f"{folder}: {len(files)} images, {found} detections, {kept} kept, {found - kept} dropped {dict(reasons)}")
    if args.crops and dropped_crops:
        contact_sheet(dropped_crops, args.crops)
        print(f"{len(dropped_crops)} dropped faces in {args.crops}")


if __name__ == "__main__":
    main()
