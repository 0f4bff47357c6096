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
from collections import Counter
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


def large_png(side: int) -> bytes:
    """A side x side PNG: one face side / 3 pixels wide on a flat background (small on the wire, side² pixels
    decoded)."""
    canvas = np.full((side, side, 3), 200, np.uint8)
    face = crowd_image(rows=1, tile=side // 2)
    top = (side - face.shape[0]) // 2
    canvas[top : top + face.shape[0], top : top + face.shape[1]] = face
    return encode(canvas, "PNG")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(source: Path, settings: dict[str, str], folder: Path) -> tuple[subprocess.Popen, str]:
    """`stra-face serve` from the checkout `source` with the shipped models; waits for /ready."""
    port = free_port()
    env = (
        os.environ
        | {
            "STRA_GALLERY_PATH": str(folder / "gallery.sqlite3"),
            "STRA_PROVIDERS": '["CPUExecutionProvider"]',
            "PYTHONPATH": str(source),
        }
        | settings
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stra_face.service.cli",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=source,
        env=env,
        stdout=(folder / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the server did not start:\n{(folder / 'server.log').read_text()[-2000:]}")


class Sampler(threading.Thread):
    """The process's RSS every 20 ms; `peak()` since the last call. On a shared machine it kills the
    server when the machine's available memory falls below `floor` bytes (`killed` says so)."""

    def __init__(self, pid: int, floor: int):
        super().__init__(daemon=True)
        self.process, self.top, self.running, self.floor, self.killed = psutil.Process(pid), 0, True, floor, False

    def rss(self) -> int:
        return self.process.memory_info().rss

    def run(self) -> None:
        while self.running:
            try:
                self.top = max(self.top, self.rss())
                if psutil.virtual_memory().available < self.floor:
                    self.killed = True
                    self.process.kill()
                    return
            except psutil.Error:
                return
            time.sleep(0.02)

    def peak(self) -> int:
        top, self.top = self.top, self.rss()
        return max(top, self.top)


def post(url: str, route: str, files: dict[str, bytes], query: str = "") -> int:
    parts = {name: (f"{name}.img", data, "application/octet-stream") for name, data in files.items()}
    return httpx.post(f"{url}/v1/{route}{query}", files=parts, timeout=600).status_code


def mixed_requests(url: str, photos: list[bytes], count: int = 100, clients: int = 4) -> list[int]:
    """`count` requests over detect, analyze, embed and verify with the example photos, `clients` at a time."""
    routes = ["detect", "analyze", "embed", "verify"]

    def one(index: int) -> int:
        route, photo = routes[index % 4], photos[index % len(photos)]
        files = (
            {"image1": photo, "image2": photos[(index + 1) % len(photos)]} if route == "verify" else {"image": photo}
        )
        return post(url, route, files)

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(count)))


def measure(
    source: Path, settings: dict[str, str], folder: Path, large_side: int, load: bool, floor: int
) -> list[tuple[str, str, int, int]]:
    """[(case, statuses, RSS after, peak during)] for one server."""
    photos = [
        p.read_bytes() for p in sorted((DATA / "faces" / "examples").glob("*")) if p.suffix.lower() in (".jpg", ".png")
    ]
    crowd = encode(crowd_image())
    four_mp = encode(cv2.resize(crowd_image(), (2000, 2000), interpolation=cv2.INTER_LINEAR))
    large = [large_png(large_side), large_png(large_side - 2)]
    process, url = start_server(source, settings, folder)
    sampler = Sampler(process.pid, floor)
    sampler.start()
    rows = []

    def case(name: str, run) -> None:
        sampler.peak()
        try:
            statuses = run()
        except (httpx.HTTPError, psutil.Error, subprocess.CalledProcessError):
            if not sampler.killed:
                raise
        if sampler.killed:
            raise SystemExit(
                f"stopped during {name!r}: the machine had less than {floor >> 20} MiB available; "
                f"server RSS peaked at {sampler.top >> 20} MiB"
            )
        rows.append(
            (name, ",".join(f"{s}x{n}" for s, n in sorted(Counter(statuses).items())), sampler.rss(), sampler.peak())
        )
        print(
            f"  {name:<28} {rows[-1][1]:<14} RSS {rows[-1][2] / 2**20:7.0f} MiB  peak {rows[-1][3] / 2**20:7.0f} MiB",
            flush=True,
        )

    try:
        time.sleep(2)
        case("idle", list)
        case("100 mixed requests", lambda: mixed_requests(url, photos))
        case("225-face 1500x1500", lambda: [post(url, "detect", {"image": crowd})])
        case("min_face_size=8, 4 MP", lambda: [post(url, "detect", {"image": four_mp}, "?min_face_size=8")])
        with ThreadPoolExecutor(4) as pool:
            case(
                f"4 verifies, 2x{large_side}² PNG",
                lambda: list(
                    pool.map(lambda _: post(url, "verify", {"image1": large[0], "image2": large[1]}), range(4))
                ),
            )
        if load:
            bench = [
                sys.executable,
                str(ROOT / "benchmarks" / "load_bench.py"),
                "--url",
                url,
                "--clients",
                "64",
                "--duration",
                "30",
                "--pid",
                str(process.pid),
            ]

            def run_load() -> list[int]:
                done = subprocess.run(bench, check=True, capture_output=True, text=True)
                print("\n".join("    " + line for line in done.stdout.splitlines()))
                return []  # its own table has the statuses

            case("load_bench 64 clients 30 s", run_load)
    finally:
        sampler.running = False
        process.terminate()
        process.wait(30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--source",
        type=Path,
        default=ROOT,
        help="checkout whose server to run (another commit: a `git worktree` of it)",
    )
    parser.add_argument("--env", nargs="*", default=[], help="settings as STRA_NAME=value")
    parser.add_argument("--large-side", type=int, default=6000)
    parser.add_argument("--load", action="store_true", help="also run load_bench.py --clients 64 --duration 30")
    parser.add_argument(
        "--min-available-mib",
        type=int,
        default=1024,
        help="kill the server (and stop) when the machine has less memory available",
    )
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.env)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="memory-bench-") as folder:
        print(f"source {args.source}, settings {settings or 'default'}")
        rows = measure(
            args.source.resolve(), settings, Path(folder), args.large_side, args.load, args.min_available_mib << 20
        )
    print("| case | statuses | RSS after (MiB) | peak (MiB) |\n|---|---|---|---|")
    for name, statuses, after, peak in rows:
        print(f"| {name} | {statuses} | {after / 2**20:.0f} | {peak / 2**20:.0f} |")


if __name__ == "__main__":
    main()
