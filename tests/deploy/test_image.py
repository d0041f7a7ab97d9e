"""The built container image, run as deployed: node and Celery worker in two containers, each
non-root on a read-only root filesystem without capabilities, against the machine's PostgreSQL
(a schema of the test's own) and a private Redis; a CT head and a wrist radiograph go in over
C-STORE; the worker container runs both models; the node's own HEALTHCHECK turns healthy and
/health/ready answers 200.

Needs a Docker daemon and a built image named by `INFERNODE_TEST_IMAGE` (docs/DEPLOY.md,
"Building the image without a registry"); skipped without them, as building the image takes
many minutes and a registry or a base image the CI machines do not have.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from infernode.settings import load_settings
from tests.integration.workers.workers_support import RedisServer
from tests.support.net import free_port
from tests.support.waiting import wait_until

IMAGE = os.environ.get("INFERNODE_TEST_IMAGE", "")
UID = 10001

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not IMAGE or shutil.which("docker") is None,
                       reason="no built image (INFERNODE_TEST_IMAGE) or no docker client"),
]


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def containers() -> Iterator[list[str]]:
    started: list[str] = []
    yield started
    for name in reversed(started):
        logs = docker("logs", "--tail", "40", name)
        print(f"--- {name}\n{logs.stdout}{logs.stderr}")
        docker("rm", "-f", name)


def _settings_file(folder: Path) -> Path:
    """Short quiet periods (the default rules wait 15 to 20 s), a worker queue per pipeline;
    everything else comes from the image's defaults and the environment."""
    defaults = load_settings(None)
    rules = [r.model_copy(update={"quiet_period_s": 2.0}).model_dump(mode="json")
             for r in defaults.workers.rules]
    path = folder / "infernode.yaml"
    path.write_text(yaml.safe_dump({
        "dicom": {"quiet_period_s": 2.0},
        "workers": {"queues": ["ich", "stroke", "fracture"], "rules": rules},
    }))
    load_settings(path)  # valid before a container reads it
    return path


def _run(name: str, data: Path, config: Path, env: dict[str, str], *args: str) -> None:
    options = ["--name", name, "--network", "host", "--read-only", "--tmpfs",
               "/tmp:size=512m,mode=1777", "--cap-drop", "ALL", "--security-opt",
               "no-new-privileges:true", "-v", f"{data}:/var/lib/infernode",
               "-v", f"{config}:/etc/infernode/infernode.yaml:ro"]
    for key, value in env.items():
        options += ["-e", f"{key}={value}"]
    result = docker("run", "-d", *options, IMAGE, *args)
    assert result.returncode == 0, result.stderr


def _health(name: str) -> str:
    result = docker("inspect", "--format", "{{json .State.Health}}", name)
    state: dict[str, Any] = json.loads(result.stdout or "null") or {}
    return str(state.get("Status", ""))


def test_node_and_worker_containers_process_studies(
        tmp_path: Path, pg_url: str, private_redis: RedisServer, containers: list[str]) -> None:
    """Fixture order: the containers stop before the schema and the broker go."""
    # imported here: the phantoms pull in torch, which a skipped test need not load
    from infernode.samples import write_sample_studies
    from infernode.sender import dicom_files, send_files

    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, UID, UID)  # the image's user owns its state, as a volume would be
    config = _settings_file(tmp_path)
    studies = tmp_path / "studies"
    write_sample_studies(studies)
    dicom_port, web_port = free_port(), free_port()
    suffix = f"{os.getpid()}-{time.monotonic_ns()}"
    env = {"INFERNODE_DATABASE__URL": pg_url,
           "INFERNODE_WORKERS__BROKER_URL": private_redis.url,
           "INFERNODE_DICOM__PORT": str(dicom_port),
           "INFERNODE_WEB__PORT": str(web_port),
           "INFERNODE_WEB__HOST": "127.0.0.1",
           "INFERNODE_DICOM__HOST": "127.0.0.1",
           "INFERNODE_DICOM__MIN_FREE_BYTES": "0",
           "INFERNODE_INFERENCE__DEVICE": "cpu"}
    node, worker = f"infernode-node-{suffix}", f"infernode-worker-{suffix}"
    containers.append(node)
    _run(node, data, config, env | {"INFERNODE_WEB__API_TOKENS": '["image-test"]'},
         "serve", "--config", "/etc/infernode/infernode.yaml")
    base = f"http://127.0.0.1:{web_port}"

    def live() -> bool:
        try:
            return httpx.get(f"{base}/health/live", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(live, 180, "the node container to answer /health/live", every=1.0)
    containers.append(worker)
    _run(worker, data, config, env, "worker", "--config",
         "/etc/infernode/infernode.yaml", "--queues", "ich,stroke,fracture", "--pool", "solo")
    sent = send_files(dicom_files(studies / "study1") + dicom_files(studies / "study4"),
                      host="127.0.0.1", port=dicom_port, called_ae="INFERNODE",
                      calling_ae="INFERNODE_SCU")
    assert len(sent.stored) == 33
    engine = sa.create_engine(pg_url)
    try:
        def finished() -> dict[str, str] | None:
            with engine.connect() as conn:
                rows: dict[str, str] = {str(p): str(s) for p, s in conn.execute(
                    sa.text("SELECT pipeline, state FROM jobs"))}
            return rows if rows.get("ich") == rows.get("fracture") == "succeeded" \
                else None

        states = wait_until(finished, 300, "both jobs to succeed in the worker",
                            every=1.0)
        assert states
        with engine.connect() as conn:
            outputs = [Path(p) for (p,) in conn.execute(sa.text(
                "SELECT path FROM outputs WHERE path IS NOT NULL"))]
    finally:
        engine.dispose()
    # results written by the worker container into the shared volume, as its user
    assert outputs
    for path in outputs:
        on_host = data / path.relative_to("/var/lib/infernode")
        assert on_host.is_file(), path
        assert on_host.stat().st_uid == UID
    ready = httpx.get(f"{base}/health/ready", timeout=30)
    assert ready.status_code == 200, ready.text
    metrics = httpx.get(f"{base}/metrics", timeout=10,
                        headers={"Authorization": "Bearer image-test"})
    assert 'infernode_jobs{state="succeeded"} 2.0' in metrics.text
    # the image's own HEALTHCHECK (first run after its 30 s interval)
    wait_until(lambda: _health(node) == "healthy", 120, "the HEALTHCHECK to pass",
               every=2.0)
    whoami = docker("exec", node, "python", "-c",
                    "import os; print(os.getuid()); open('/opt/x', 'w')")
    assert whoami.stdout.strip() == str(UID)
    assert "Read-only file system" in whoami.stderr


def _compose_command() -> list[str]:
    if docker("compose", "version").returncode == 0:
        return ["docker", "compose"]
    found = shutil.which("docker-compose")
    if found is None:
        pytest.skip("no docker compose plugin and no docker-compose")
    return [found]


def test_compose_stack_takes_studies_to_results(tmp_path: Path) -> None:
    """deploy/compose/compose.yaml as shipped (node, CPU worker, PostgreSQL, Redis; no
    profiles), on the built image, on host ports of the test's own; a CT head and a wrist
    radiograph sent to the published DICOM port from the host come out as results. The
    postgres and redis images are whatever the daemon holds under the compose file's names
    (pulled where a registry is reachable)."""
    from infernode.samples import write_sample_studies
    from infernode.sender import dicom_files, send_files

    studies = tmp_path / "studies"
    write_sample_studies(studies)
    dicom_port, web_port = free_port(), free_port()
    env_file = tmp_path / "stack.env"
    env_file.write_text("\n".join([
        f"INFERNODE_IMAGE={IMAGE}", f"INFERNODE_DICOM_PORT={dicom_port}",
        f"INFERNODE_WEB_PORT={web_port}", "INFERNODE_DB_PASSWORD=stack-db",
        "INFERNODE_REDIS_PASSWORD=stack-redis", "GRAFANA_ADMIN_PASSWORD=stack-grafana",
        "INFERNODE_API_TOKEN=stack-token", ""]))
    compose = [*_compose_command(), "-p", f"infernode-test-{os.getpid()}", "--env-file",
               str(env_file), "-f", str(Path(__file__).resolve().parents[2] / "deploy" /
                                          "compose" / "compose.yaml")]

    def stack(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*compose, *args], capture_output=True, text=True,
                              timeout=timeout)

    up = stack("up", "-d", "--no-build")
    try:
        assert up.returncode == 0, up.stderr
        base = f"http://127.0.0.1:{web_port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/health/ready", timeout=10).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 240, "the stack's node to be ready (database, broker, worker)",
                   every=2.0)
        # from the host through the published port: the node sees the network's gateway,
        # which compose's settings list as the INFERNODE_SCU peer
        sent = send_files(dicom_files(studies / "study1") + dicom_files(studies / "study4"),
                          host="127.0.0.1", port=dicom_port, called_ae="INFERNODE",
                          calling_ae="INFERNODE_SCU")
        assert len(sent.stored) == 33

        def succeeded() -> bool:
            listed = stack("exec", "-T", "node", "infernode", "jobs", "list", "--json", "-c",
                           "/etc/infernode/infernode.yaml", timeout=60)
            if listed.returncode != 0:
                return False
            jobs = json.loads(listed.stdout)
            return sorted((j["pipeline"], j["state"]) for j in jobs) == [
                ("fracture", "succeeded"), ("ich", "succeeded")]

        wait_until(succeeded, 300, "both jobs to succeed on the stack's worker", every=3.0)
        metrics = httpx.get(f"{base}/metrics", timeout=10,
                            headers={"Authorization": "Bearer stack-token"})
        assert metrics.status_code == 200
        assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
    finally:
        logs = stack("logs", "--tail", "30", timeout=60)
        print(logs.stdout[-6000:])
        stack("down", "-v", "--timeout", "20")
