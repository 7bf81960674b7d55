"""Fixtures for distributed-mode tests: each test gets its own Redis and database."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scheduler.cluster import Cluster, RedisServer, open_cluster
from tests.services import require_postgres, require_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, so it can be killed, flushed and restarted."""
    require_redis()  # skips (or under CI=true fails) with the reason where Redis is absent
    if shutil.which("redis-server") is None:
        message = "redis-server is not on the PATH; the fault tests start their own"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def cluster(tmp_path: Path, redis_server: RedisServer) -> Iterator[Cluster]:
    """Settings for a cluster on ``redis_server`` and a fresh database, migrated; workers
    started with ``cluster.start_worker`` are stopped afterwards."""
    require_postgres()
    with open_cluster(tmp_path, redis_server.url) as running:
        yield running
