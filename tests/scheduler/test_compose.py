"""docker-compose.yml, checked without Docker: its structure, then each service's command run
as a local process against a local Redis and PostgreSQL with the service's environment."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.scheduler.cluster import REPO, Cluster, RedisServer, Worker, free_port, wait_for

yaml = pytest.importorskip("yaml", reason="PyYAML is in the dev extras: pip install -e '.[dev]'")

GENRECTL_SERVICES = ("migrate", "cpu-worker", "gpu-worker", "cli", "flower")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return document


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing set: the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_compose_describes_the_cluster(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"redis", "postgres", *GENRECTL_SERVICES}
    redis_command = services["redis"]["command"]
    assert "--appendonly" in redis_command and "yes" in redis_command
    assert redis_command[redis_command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    images = {services[name]["image"] for name in GENRECTL_SERVICES}
    assert images == {"genrectl:latest"}  # one image for every genrectl service
    assert all(services[name]["build"] == "." for name in GENRECTL_SERVICES)
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for worker in ("cpu-worker", "gpu-worker"):
        service = services[worker]
        assert "container_name" not in service and "ports" not in service  # --scale works
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert any(v.endswith(":/music:ro") for v in service["volumes"])  # library read-only
        assert any(v.startswith("shards:") for v in service["volumes"])  # shared shards
    (device,) = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    for worker in ("cpu-worker", "gpu-worker"):  # the workers run the periodic job
        env = services[worker]["environment"]
        assert int(env["GENRECTL_RECONCILE_INTERVAL"]) > 0 and int(env["GENRECTL_GC_INTERVAL"]) > 0
    flower = services["flower"]
    assert flower["entrypoint"] == ["celery"] and flower["profiles"] == ["monitor"]
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])  # not on the network


def _local_env(service: dict[str, Any], cluster: Cluster, tmp_path: Path) -> dict[str, str]:
    """The service's environment with the compose hosts and volumes replaced by local ones."""
    env = {k: _interpolate(str(v)) for k, v in service["environment"].items()}
    env["GENRECTL_BROKER_URL"] = env["GENRECTL_BROKER_URL"].replace(
        "redis://redis:6379", cluster.env["GENRECTL_BROKER_URL"].rsplit("/", 1)[0]
    )
    assert env["GENRECTL_DATABASE_URL"].startswith("postgresql+psycopg://")
    env["GENRECTL_DATABASE_URL"] = cluster.env["GENRECTL_DATABASE_URL"]
    for key in ("GENRECTL_DATA_DIR", "GENRECTL_HOME"):
        env[key] = str(tmp_path / env[key].lstrip("/"))
    if env.get("GENRECTL_DEVICE") == "cuda":
        env["GENRECTL_DEVICE"] = "cpu"  # no GPU here; the gpu worker falls back to the CPU
    return env


def _run(command: list[str], env: dict[str, str], *, log: Path) -> subprocess.Popen[bytes]:
    """The image's ENTRYPOINT is ``genrectl``: run ``genrectl COMMAND`` from this checkout."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", *command],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.services
def test_each_service_command_runs_locally(
    compose: dict[str, Any], cluster: Cluster, redis_server: RedisServer, tmp_path: Path
) -> None:
    services = compose["services"]
    _check_redis_command(services["redis"], tmp_path)
    pg_ready = [*services["postgres"]["healthcheck"]["test"][1:], "-h", "127.0.0.1"]
    assert subprocess.run(pg_ready, capture_output=True, timeout=30).returncode == 0
    migrate = services["migrate"]
    log = cluster.logs / "migrate"
    process = _run(migrate["command"], _local_env(migrate, cluster, tmp_path), log=log)
    assert process.wait(timeout=120) == 0, log.read_text()
    started = []
    for name in ("cpu-worker", "cpu-worker", "gpu-worker"):  # cpu-worker twice: --scale 2
        service, log = services[name], cluster.logs / f"{name}-{len(started)}"
        process = _run(service["command"], _local_env(service, cluster, tmp_path), log=log)
        cluster.workers.append(process)  # stopped by the fixture
        started.append(Worker(process, log))
    for worker in started:
        wait_for(worker.ready, timeout=60, what=f"{worker.log.name} to be ready", every=0.2)
    cli = services["cli"]
    status = subprocess.run(
        [sys.executable, "-m", "cli.main", *cli["command"], "--json"],
        cwd=REPO,
        env={**os.environ, **_local_env(cli, cluster, tmp_path)},
        capture_output=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr.decode()
    workers = json.loads(status.stdout)["cluster"]["workers"]
    assert sorted(w["queues"] for w in workers) == [["cpu"], ["cpu"], ["gpu"]]
    wait_for(  # the workers run the periodic job by themselves, the first time at once
        lambda: (
            set(json.loads(cluster.cli("status", "--json").stdout)["housekeeping"])
            == {"reconcile", "gc"}
        ),
        timeout=60,
        what="the periodic reconcile and gc",
        every=0.5,
    )
    assert sorted(_flower_workers(services["flower"], cluster, tmp_path)) == sorted(
        w["name"] for w in workers
    )


def _flower_workers(service: dict[str, Any], cluster: Cluster, tmp_path: Path) -> list[str]:
    """Run the flower service's command (entrypoint celery) locally: the workers it sees."""
    port = free_port()
    broker = cluster.env["GENRECTL_BROKER_URL"]
    args = [a.replace("redis://redis:6379/0", broker) for a in service["command"]]
    args = [f"--port={port}" if a.startswith("--port") else a for a in args]
    env = {**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"}  # its JSON API, for the test
    with (cluster.logs / "flower").open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", *service["entrypoint"], *args, "--address=127.0.0.1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}/api/workers?refresh=1"
        found = wait_for(lambda: _get_json(url), timeout=60, what="flower's API", every=0.5)
        return list(found)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


def _check_redis_command(service: dict[str, Any], tmp_path: Path) -> None:
    """Start the redis service's command on a free port; it must be a noeviction queue."""
    server = RedisServer(tmp_path / "compose-redis")
    command = [*service["command"], "--port", str(server.port), "--dir", str(server.directory)]
    server.directory.mkdir(parents=True)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        client = redis.Redis(port=server.port)
        wait_for(lambda: _pings(client), timeout=10, what="the compose redis command")
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        probe = [*service["healthcheck"]["test"][1:], "-p", str(server.port)]
        assert subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    finally:
        process.kill()
        process.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False
