"""Shared fixtures: real data location, small random ONNX models, a service factory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()
FACES = SHARED_DATA / "faces"
PGVECTOR_SOURCE = (ROOT / ".." / "shared" / "vendor" / "pgvector-0.8.6.tar.gz").resolve()
PGVECTOR_MISSING = pytest.StashKey[str | None]()  # why the test server has no pgvector, if it has none


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path} (see ../shared/data/README.md)")
    return path


def with_batchnorm_statistics(model: torch.nn.Module, input_shape: tuple[int, int, int]) -> torch.nn.Module:
    """Random weights, but BatchNorm statistics measured on noise: without them every input maps to
    nearly the same embedding, and tests could not tell one face from another."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(32, *input_shape) * 2 - 1)
    return model.eval()


@pytest.fixture(scope="session")
def random_onnx_models(tmp_path_factory) -> dict[str, Path]:
    """Randomly initialised MobileNetV2 embedding/expression models: the service's plumbing
    does not depend on what the weights learned (trained-model tests use the shipped files)."""
    from stra_face import models
    from stra_face.training.export.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    embedding = export_onnx(
        with_batchnorm_statistics(models.create_model("mobilenetv2_100", embedding_dim=128), (3, 112, 112)),
        folder / "embedding.onnx",
        (3, 112, 112),
    )
    expression = export_onnx(
        with_batchnorm_statistics(
            models.create_model("mobilenetv2_100", num_classes=7, in_chans=1, stem_stride=2), (1, 48, 48)
        ),
        folder / "expression.onnx",
        (1, 48, 48),
    )
    return {"embedding": embedding, "expression": expression}


@pytest.fixture
def make_client(random_onnx_models, tmp_path):
    """make_client(**settings) -> a started TestClient; the gallery lives in tmp_path."""
    from fastapi.testclient import TestClient

    from stra_face.service.app import create_app
    from stra_face.service.settings import Settings

    clients = []

    def factory(**overrides):
        values = {
            "embedding_model": random_onnx_models["embedding"],
            "expression_model": random_onnx_models["expression"],
            "thresholds_file": tmp_path / "thresholds.json",
            "gallery_path": tmp_path / "gallery.sqlite3",
            "providers": ["CPUExecutionProvider"],
        } | overrides
        client = TestClient(create_app(Settings(**values)))
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


def write_thresholds(path: Path, sha256: str, thresholds: dict[str, float]) -> None:
    path.write_text(
        json.dumps({sha256: {"model": "test", "dataset": "unit-test", "pairs": 0, "thresholds": thresholds}})
    )


def find_initdb() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve()
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1] if candidates else None


def install_pgvector(bin_dir: Path) -> str | None:
    """Builds and installs pgvector from the vendored source into the local PostgreSQL when it is
    missing (about 20 s on 2 cores); returns why it could not, or None."""
    pg_config = bin_dir / "pg_config"
    if not pg_config.exists():
        return f"no {pg_config} (apt-get install postgresql-server-dev-15)"
    config = lambda flag: subprocess.run([str(pg_config), flag], capture_output=True, text=True).stdout.strip()  # noqa: E731
    if (Path(config("--sharedir")) / "extension" / "vector.control").exists():
        return None
    if not Path(config("--pgxs")).exists():
        return "PostgreSQL's server headers are missing (apt-get install postgresql-server-dev-15)"
    if not PGVECTOR_SOURCE.exists():
        return f"no pgvector source at {PGVECTOR_SOURCE}"
    if os.geteuid() != 0:
        return "pgvector is not installed and installing it needs root"
    with tempfile.TemporaryDirectory(prefix="pgvector-") as build:
        shutil.unpack_archive(PGVECTOR_SOURCE, build)
        source = next(Path(build).glob("pgvector-*"))
        for target in ([], ["install"]):
            done = subprocess.run(
                ["nice", "-n", "10", "make", "-C", str(source), f"PG_CONFIG={pg_config}", *target],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:  # compiler output says less than the package that is missing
                return (
                    f"building pgvector failed (make exit {done.returncode}): "
                    "install Debian's postgresql-server-dev-15 (PostgreSQL's server headers)"
                )
    return None


@pytest.fixture(scope="session")
def postgres_dsn(request):
    """A DSN from the environment, or a throwaway server started from the local binaries."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[postgres]')")
    if os.environ.get("STRA_TEST_POSTGRES_DSN"):
        yield os.environ["STRA_TEST_POSTGRES_DSN"]
        return
    initdb = find_initdb()
    if initdb is None:
        pytest.skip("no PostgreSQL here: set STRA_TEST_POSTGRES_DSN or install Debian's postgresql package")
    bin_dir = initdb.parent
    request.config.stash[PGVECTOR_MISSING] = install_pgvector(bin_dir)
    root = Path(tempfile.mkdtemp(prefix="stra-pg-"))
    # initdb refuses to run as root: the server runs as the `postgres` system user then.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "postgres")
    data, socket_dir = root / "data", root
    options = f"-k {socket_dir} -c listen_addresses='' -p 5439 -c fsync=off"
    for command in (
        [*as_user, str(initdb), "-D", str(data), "-A", "trust", "-U", "postgres"],
        [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(root / "log"), "start"],
    ):
        started = subprocess.run(command, capture_output=True, text=True)
        if started.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip(
                f"could not start a throwaway PostgreSQL ({command[len(as_user)]}): {started.stderr.strip()[-300:]}"
            )
    try:
        yield f"postgresql://postgres@/postgres?host={socket_dir}&port=5439"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pgvector_dsn(request, postgres_dsn):
    """The test PostgreSQL, with the pgvector extension created (skipped, with the reason, without it)."""
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        if db.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is None:
            pytest.skip(
                "pgvector is not available: "
                f"{request.config.stash.get(PGVECTOR_MISSING, None) or 'not installed in that server'}"
            )
        db.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return postgres_dsn


@pytest.fixture(scope="session")
def live_server(random_onnx_models, tmp_path_factory):
    """`stra-face serve` in a subprocess on a free port (random-weight models, a calibration for
    them, short slow-client timeouts), shared by the tests that need real sockets."""
    from live_server import start_server, stop_server
    from stra_face.vision.inference import sha256_file

    sha = sha256_file(random_onnx_models["embedding"])
    thresholds = {
        sha: {
            "model": "random",
            "dataset": "unit-test",
            "pairs": 0,
            "thresholds": {"0.01": 0.3, "0.001": 0.4, "0.0001": 0.5},
        }
    }
    server = start_server(
        random_onnx_models, tmp_path_factory.mktemp("live"), thresholds, header_timeout_s=2, body_timeout_s=3
    )
    yield server
    stop_server(server)
