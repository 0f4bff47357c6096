"""A Docker engine of the tests' own and the Debian base its images are built on (shared by
tests/test_docker.py and tests/test_compose.py).

Base images cannot be pulled here, so builds replace their public base (python:3.11-slim,
debian:bookworm-slim) with a Debian bookworm made by debootstrap (from Debian's own packages) +
`docker import`, carrying the host's CA bundle for pip. The debootstrapped root is cached as a
tarball (STRA_DOCKER_BASE_CACHE, default /var/cache/stra-face/) between runs on the same machine:
making it costs minutes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from live_server import stop_process

BASE_CACHE = Path(os.environ.get("STRA_DOCKER_BASE_CACHE", "/var/cache/stra-face/debian-bookworm-python3.tar"))
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


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


def skip_unless_engine_possible() -> None:
    """Skips, saying why, where this machine cannot start an engine and build on a Debian base."""
    if os.geteuid() != 0:
        pytest.skip("starting a Docker engine needs root")
    for tool in ("dockerd", "docker"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} here (apt-get install docker.io)")
    if not BASE_CACHE.exists() and shutil.which("debootstrap") is None:
        pytest.skip(
            f"no base image cached at {BASE_CACHE} and no debootstrap to make one (apt-get install debootstrap)"
        )


class Engine:
    """A Docker daemon of our own (own socket, data and exec roots), without a default bridge or
    iptables rules. Builds and `docker run` containers use the host's network; compose's own
    (user-defined) bridge networks still work: traffic between containers on one bridge needs no
    iptables, and published ports are served by docker-proxy (the userland proxy) on the host."""

    def __init__(self, root: Path | None = None):
        self.root = root or Path(tempfile.mkdtemp(prefix="stra-docker-", dir="/var/tmp"))  # overlayfs needs a real disk
        self.host = f"unix://{self.root}/docker.sock"
        self.log = open(self.root / "dockerd.log", "w")
        self.process = subprocess.Popen(
            [
                "dockerd", "--host", self.host, "--data-root", str(self.root / "data"),
                "--exec-root", str(self.root / "exec"), "--pidfile", str(self.root / "docker.pid"),
                "--bridge=none", "--iptables=false", "--ip6tables=false",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    @property
    def environment(self) -> dict[str, str]:
        """For docker / docker-compose run against this engine."""
        return os.environ | {"DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0"}

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

    def import_base(self, tag: str, work: Path) -> str:
        """The debootstrapped Debian bookworm as image `tag` (what BASE_IMAGE replaces)."""
        self(
            "import",
            "--change",
            f"ENV PIP_CERT={HOST_CA_BUNDLE}",
            "--change",
            'CMD ["python3"]',
            str(debian_base(work)),
            tag,
        )
        return tag

    def build(self, dockerfile: Path, tag: str, context: Path, *build_args: str, timeout: float = 1800) -> float:
        """Builds on the host's network; returns the seconds it took."""
        started = time.monotonic()
        args = [item for build_arg in build_args for item in ("--build-arg", build_arg)]
        built = self(
            "build", "--network", "host", *args, "-f", str(dockerfile), "-t", tag, str(context), timeout=timeout
        )
        assert "Successfully built" in built.stdout or "Successfully tagged" in built.stdout, built.stdout[-2000:]
        return time.monotonic() - started

    def stop(self, remove: bool = True) -> None:
        stop_process(self.process, timeout=60)
        self.log.close()
        # dockerd leaves its network namespace (exec-root/netns/default) mounted
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(f"{self.root}/")), reverse=True):
            subprocess.run(["umount", "--lazy", mount], capture_output=True)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


def debian_base(work: Path) -> Path:
    """A tarball of Debian bookworm with python3, venv and the host's CA bundle (cached)."""
    if BASE_CACHE.exists():
        return BASE_CACHE
    rootfs = work / "rootfs"
    made = subprocess.run(
        ["nice", "-n", "10", "debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
         "bookworm", str(rootfs), "http://deb.debian.org/debian"],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
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
