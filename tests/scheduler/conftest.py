"""Fixtures for distributed-mode tests: each test gets its own Redis and database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from db.engine import dispose_engines
from tests.scheduler.cluster import Cluster, RedisServer
from tests.services import create_database, drop_database, require_postgres, require_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, so it can be killed, flushed and restarted."""
    require_redis()  # the machine's server proves redis-server is installed and usable
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def cluster(tmp_path: Path, redis_server: RedisServer) -> Iterator[Cluster]:
    """Settings for a cluster on ``redis_server`` and a fresh database, migrated; workers
    started with ``cluster.start_worker`` are stopped afterwards."""
    require_postgres()
    name, url = create_database()
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {
        "GENRECTL_HOME": str(tmp_path / "home"),
        "GENRECTL_DATA_DIR": str(tmp_path / "data"),
        "GENRECTL_DATABASE_URL": url,
        "GENRECTL_BROKER_URL": redis_server.url,
        "GENRECTL_CHUNK_SIZE": "2",
        "GENRECTL_DEVICE": "cpu",
    }
    running = Cluster(env, logs, db_name=name)
    running.cli("db", "upgrade")
    try:
        yield running
    finally:
        running.stop_workers()
        dispose_engines()
        drop_database(name)
