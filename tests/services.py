"""Real Redis and PostgreSQL for tests marked ``services``.

Where a server is absent the test skips with the reason, except under CI=true: there we
start the machine's own server if it is installed and stopped, and fail if it cannot be had.
"""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import time
import uuid

import pytest

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _start(command: list[str], host: str, port: int) -> bool:
    try:
        subprocess.run(command, check=False, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    for _ in range(50):
        if _listening(host, port):
            return True
        time.sleep(0.2)
    return False


def _unavailable(what: str) -> None:
    message = f"{what} is not reachable"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(f"{message}; start it to run this test")


def require_postgres() -> None:
    if _listening(PG_HOST, PG_PORT):
        return
    if os.environ.get("CI") == "true":
        versions = sorted(glob.glob("/etc/postgresql/*"))
        if versions and _start(
            [
                "pg_ctlcluster",
                "--skip-systemctl-redirect",
                os.path.basename(versions[-1]),
                "main",
                "start",
            ],
            PG_HOST,
            PG_PORT,
        ):
            return
    _unavailable(f"PostgreSQL on {PG_HOST}:{PG_PORT}")


def require_redis() -> None:
    if _listening(REDIS_HOST, REDIS_PORT):
        return
    if os.environ.get("CI") == "true" and _start(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        REDIS_HOST,
        REDIS_PORT,
    ):
        return
    _unavailable(f"Redis on {REDIS_HOST}:{REDIS_PORT}")


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(
        f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test", autocommit=True
    ) as conn:
        conn.execute(sql)


def create_database() -> tuple[str, str]:
    """A fresh database for this test; returns (name, SQLAlchemy URL)."""
    require_postgres()
    name = f"genrectl_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    return name, f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"


def drop_database(name: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
