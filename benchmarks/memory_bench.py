"""The server's memory: RSS at idle, after mixed requests, and after the worst requests it admits.

    python benchmarks/memory_bench.py                      # default settings
    python benchmarks/memory_bench.py --env STRA_MAX_IMAGE_REQUESTS=64

Starts `stra-face serve` with the shipped models on a free port (as tests/live_server.py does) and
prints its RSS (psutil, the server process) at idle, after 100 mixed requests (detect, analyze,
verify, embed with the photos of ../shared/data/faces/examples), after each worst case below, and
the peak seen while they ran:
- crowd: /v1/detect of a 1500x1500 image tiled 15x15 with one face photo (225 faces);
- min_face_size=8: /v1/detect?min_face_size=8 of a 4 MP image (the crowd, scaled up);
- verify_large: 4 concurrent /v1/verify of two large PNGs (`--large-side` px square, 6,000 default);
- load: `benchmarks/load_bench.py --clients 64 --duration 30` against the server (with `--load`).
"""
from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
FACE_PHOTO = DATA / "lfw" / "raw_sample" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"


def crowd_image(rows: int = 15, tile: int = 100, photo: Path = FACE_PHOTO) -> np.ndarray:
    """A (rows * tile)-pixel square RGB image of rows x rows copies of the face in an LFW photo."""
    face = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    face = cv2.resize(face[50:200, 50:200], (tile, tile), interpolation=cv2.INTER_AREA)  # LFW faces sit in the centre
    return np.tile(face, (rows, rows, 1))


def encode(image: np.ndarray, kind: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, kind, **({"quality": 92} if kind == "JPEG" else {"compress_level": 1}))
    return buffer.getvalue()
