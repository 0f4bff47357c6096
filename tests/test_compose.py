"""docker/compose.yml and docker/compose.replicas.yml brought up for real with Debian's docker-compose
(1.29) on a Docker engine of the test's own (tests/dockerlib.py: no default bridge, no iptables).

The three images (service, PostgreSQL + pgvector, nginx) are built once for the module on the
debootstrapped Debian base, tagged as the compose files name them, and the files are then run with
`up --no-build` (the engine has no default bridge for `docker-compose build`'s build containers).
Compose's own network is a user-defined bridge: containers on it reach each other without any
iptables rule, and published ports are served by docker-proxy on the host.

The replicas test: 2 replicas (deploy.replicas, which docker-compose 1.29 honours) over one
PostgreSQL behind nginx; a face enrolled through the proxy is identified through it, each replica
answers at least once (nginx's access log names the upstream address), one replica is killed
(`docker kill`) in the middle of a burst of STRA_TEST_COMPOSE_ENROLMENTS enrolments and every
acknowledged one is found afterwards; `down -v` leaves no container, volume or network behind, and
the module leaves no image (nor the engine, nor iptables rules).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import FACES, PGVECTOR_SOURCE, ROOT, need
from dockerlib import BASE_CACHE, Engine, free_port, iptables_rules, skip_unless_engine_possible

pytestmark = pytest.mark.slow

DOCKER = ROOT / "docker"
ENROLMENTS = int(os.environ.get("STRA_TEST_COMPOSE_ENROLMENTS", "40"))
SUBJECTS = [f"s{i}" for i in range(4)]


def compose_images() -> dict[str, str]:
    """service -> image tag, as the compose files name them."""
    import yaml

    images = {}
    for name in ("compose.yml", "compose.replicas.yml"):
        for service, spec in yaml.safe_load((DOCKER / name).read_text())["services"].items():
            images[service] = spec["image"]
    return images


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A Docker engine with the compose files' three images built (timed) on the Debian base."""
    pytest.importorskip("httpx")
    pytest.importorskip("yaml")
    skip_unless_engine_possible()
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    if not PGVECTOR_SOURCE.exists():
        pytest.skip(f"no pgvector source at {PGVECTOR_SOURCE} (the PostgreSQL image compiles it)")
    rules_before = iptables_rules()
    work = tmp_path_factory.mktemp("compose")
    engine = Engine()
    try:
        why = engine.wait()
        if why is not None:
            pytest.skip(f"the Docker engine did not start here: {why}")
        base = engine.import_base(f"stra-face-test-base:{uuid.uuid4().hex[:10]}", work)
        # the small images' context: a copy of docker/ with the vendored pgvector source where
        # docker/postgres.Dockerfile expects it (the repository's docker/vendor/ is the user's)
        context = work / "docker"
        shutil.copytree(DOCKER, context, ignore=shutil.ignore_patterns("vendor"))
        (context / "vendor").mkdir()
        shutil.copy(PGVECTOR_SOURCE, context / "vendor")
        images = compose_images()
        seconds = {
            "stra-face": engine.build(DOCKER / "Dockerfile", images["stra-face"], ROOT, f"BASE_IMAGE={base}"),
            "postgres": engine.build(
                context / "postgres.Dockerfile", images["postgres"], context, f"BASE_IMAGE={base}"
            ),
            "proxy": engine.build(context / "nginx.Dockerfile", images["proxy"], context, f"BASE_IMAGE={base}"),
        }
        for service, took in seconds.items():
            size = int(engine("image", "inspect", "--format", "{{.Size}}", images[service]).stdout)
            print(f"\n{images[service]} built in {took:.0f} s, {size / 2**20:.0f} MiB")
        engine.rmi_on_exit = [*images.values(), base]
        yield engine
    finally:
        engine("rmi", "--force", *getattr(engine, "rmi_on_exit", []), check=False)
        engine("image", "prune", "--all", "--force", check=False)
        left = engine("images", "--all", "--quiet", check=False).stdout.split()
        engine.stop()
    assert left == [], f"images left behind: {left}"
    assert not engine.root.exists()
    assert iptables_rules() == rules_before  # the engine ran without iptables: nothing to leave behind
    assert BASE_CACHE.exists()


class Project:
    """One compose file up on the test's engine, on a free host port; `down -v` on close."""

    def __init__(self, engine: Engine, compose_file: str, **environment: str):
        self.engine, self.name, self.port = engine, f"stra{uuid.uuid4().hex[:8]}", free_port()
        self.file = DOCKER / compose_file
        self.environment = engine.environment | {"STRA_PUBLISH_PORT": str(self.port)} | environment
        self.url = f"http://127.0.0.1:{self.port}"

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["docker-compose", "--project-name", self.name, "--file", str(self.file), *args],
            capture_output=True, text=True, timeout=timeout, env=self.environment,
        )  # fmt: skip
        assert done.returncode == 0, f"docker-compose {' '.join(args)} failed: {done.stderr[-3000:]}"
        return done

    def containers(self, service: str | None = None) -> list[str]:
        label = f"com.docker.compose.project={self.name}"
        filters = ["--filter", f"label={label}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        return sorted(self.engine("ps", "--all", "--quiet", *filters).stdout.split())

    def address(self, container: str) -> str:
        return self.engine(
            "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container
        ).stdout.strip()

    def logs(self, container: str) -> str:
        done = self.engine("logs", container, check=False)
        return done.stdout + done.stderr

    def wait_ready(self, client, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if client.get(f"{self.url}/ready").status_code == 200:
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(1)
        logs = "\n".join(self.logs(container)[-1000:] for container in self.containers())
        raise AssertionError(f"{self.file.name} not ready after {timeout} s: {logs}")

    def down(self) -> None:
        self("down", "--volumes", "--remove-orphans", "--timeout", "20")
        label = f"label=com.docker.compose.project={self.name}"
        assert self.engine("ps", "--all", "--quiet", "--filter", label).stdout.split() == []
        assert self.engine("volume", "ls", "--quiet", "--filter", label).stdout.split() == []
        networks = self.engine("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert sorted(networks) == ["host", "none"], networks


def test_single_instance_compose(engine):
    import httpx

    started = time.monotonic()
    project = Project(engine, "compose.yml")
    try:
        project("up", "--detach", "--no-build")
        with httpx.Client(timeout=120) as client:
            project.wait_ready(client)
            assert client.get(f"{project.url}/v1/info").json()["gallery"] == "sqlite"
            photos = [need(FACES / "examples" / name).read_bytes() for name in ("obama-480p.jpg", "obama-240p.jpg")]
            verified = client.post(
                f"{project.url}/v1/verify", files={"image1": ("1.jpg", photos[0]), "image2": ("2.jpg", photos[1])}
            )
            assert verified.status_code == 200 and verified.json()["verified"] is True, verified.text
        (container,) = project.containers("stra-face")
        assert engine("exec", container, "id", "-u").stdout.strip() == "10001"
    finally:
        project.down()
    print(f"\ncompose.yml: up, ready, verified and down in {time.monotonic() - started:.0f} s")


def enrol(client, url: str, subject: str, image: bytes) -> tuple[str | None, str | None]:
    """(face id or None, error or None)."""
    try:
        response = client.post(f"{url}/v1/subjects/{subject}/faces", files={"image": ("face.jpg", image)})
    except Exception as error:  # the proxy may drop a connection whose replica died
        return None, repr(error)
    if response.status_code != 201:
        return None, f"{response.status_code} {response.text[:200]}"
    return response.json()["face"]["id"], None


def identify(client, url: str, image: bytes) -> dict:
    response = client.post(f"{url}/v1/identify", files={"image": ("probe.jpg", image)})
    assert response.status_code == 200, response.text
    return response.json()["faces"][0]


def test_replicas_compose(engine):
    import httpx

    started = time.monotonic()
    probe, other = (need(FACES / "examples" / name).read_bytes() for name in ("obama-240p.jpg", "obama-480p.jpg"))
    burst = need(FACES / "examples" / "biden.jpg").read_bytes()
    project = Project(engine, "compose.replicas.yml", STRA_REPLICAS="2", POSTGRES_PASSWORD=uuid.uuid4().hex)
    try:
        project("up", "--detach", "--no-build")  # returns once postgres, then the replicas, are healthy
        replicas = project.containers("stra-face")
        assert len(replicas) == 2, "deploy.replicas was not honoured"
        (proxy,) = project.containers("proxy")
        addresses = {project.address(replica): replica for replica in replicas}
        client = httpx.Client(timeout=120)
        project.wait_ready(client)
        up = time.monotonic() - started
        assert client.get(f"{project.url}/v1/info").json()["gallery"] == "postgresql+pgvector"

        # enrolled through the proxy, identified through it: whichever replica answers knows the face
        assert client.post(f"{project.url}/v1/subjects", json={"id": "obama"}).status_code == 201
        assert enrol(client, project.url, "obama", probe)[1] is None
        served = set()
        for _ in range(40):  # nginx picks a replica at random: both answer long before 40 requests
            match = identify(client, project.url, other)
            assert match["subject_id"] == "obama" and match["matches"][0]["subject_id"] == "obama", match
            log = re.findall(r'"POST /v1/identify[^"]*" 200 .* upstream=([\d.]+):8000', project.logs(proxy))
            served = set(log)
            if served == set(addresses):
                break
        assert served == set(addresses), f"identify answered by {served}, replicas at {sorted(addresses)}"

        # one replica killed in the middle of a burst of enrolments
        for subject in SUBJECTS:
            assert client.post(f"{project.url}/v1/subjects", json={"id": subject}).status_code == 201
        done, killed, lock = [0], threading.Event(), threading.Lock()
        victim = replicas[0]

        def enrol_and_count(i: int):
            result = enrol(client, project.url, SUBJECTS[i % len(SUBJECTS)], burst)
            with lock:
                done[0] += 1
                if done[0] == ENROLMENTS // 3:
                    engine("kill", victim)
                    killed.set()
            return result

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(enrol_and_count, range(ENROLMENTS)))
        assert killed.is_set()
        assert engine("inspect", "--format", "{{.State.ExitCode}}", victim).stdout.strip() == "137"
        acknowledged = {face for face, _ in results if face}
        failed = [error for _, error in results if error]
        outcome = f"{len(acknowledged)} acknowledged, {len(failed)} failed ({sorted({error[:3] for error in failed})})"
        print(f"\nburst of {ENROLMENTS} enrolments, one replica killed after {ENROLMENTS // 3}: {outcome}")
        assert len(acknowledged) >= ENROLMENTS // 3  # the survivor went on answering
        stored = set()
        for subject in SUBJECTS:
            response = client.get(f"{project.url}/v1/subjects/{subject}")
            assert response.status_code == 200, response.text
            stored |= {face["id"] for face in response.json()["faces"]}
        assert acknowledged <= stored  # every acknowledged enrolment survived
        assert len(stored - acknowledged) <= len(failed)  # at most those the dead replica never answered
        assert identify(client, project.url, burst)["matches"][0]["subject_id"] in SUBJECTS
        client.close()
    finally:
        project.down()
    print(f"compose.replicas.yml: up and ready in {up:.0f} s, all of it and down in {time.monotonic() - started:.0f} s")
