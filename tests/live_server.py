"""`stra-face serve` in a subprocess, for tests that need real sockets (chunked bodies, slow clients,
keep-alive, the process's own memory)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    host: str
    port: int
    process: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None


def start_server(models: dict[str, Path], folder: Path, thresholds: dict | None = None, **settings) -> LiveServer:
    """Starts the service on a free port with random-weight models; waits until /ready answers 200."""
    port = free_port()
    thresholds_file = folder / "thresholds.json"
    thresholds_file.write_text(json.dumps(thresholds or {}))
    env = (
        os.environ
        | {
            "STRA_EMBEDDING_MODEL": str(models["embedding"]),
            "STRA_EXPRESSION_MODEL": str(models["expression"]),
            "STRA_THRESHOLDS_FILE": str(thresholds_file),
            "STRA_GALLERY_PATH": str(folder / "gallery.sqlite3"),
            "STRA_PROVIDERS": '["CPUExecutionProvider"]',
            "PYTHONPATH": str(ROOT),
        }
        | {f"STRA_{key.upper()}": str(value) for key, value in settings.items()}
    )
    log = folder / "server.log"
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
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = LiveServer(f"http://127.0.0.1:{port}", "127.0.0.1", port, process, log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(server.url + "/ready", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(server)
    raise RuntimeError(f"the server did not become ready in 180 s:\n{log.read_text()[-3000:]}")


def stop_process(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_server(server: LiveServer) -> None:
    stop_process(server.process)
