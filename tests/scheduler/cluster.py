"""A real little cluster for tests: a redis-server of its own, a PostgreSQL database of its
own, and `genrectl worker` processes. Every wait is bounded, and everything started is
stopped by the fixture that started it (tests/scheduler/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import soundfile as sf
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from cli.main import cli
from db.engine import session_scope
from db.models import Job, JobStatus
from genrectl.settings import Settings
from scheduler.batches import BatchCounts, count_jobs

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T], *, timeout: float, what: str, every: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop_process(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM the process group; SIGKILL whatever of the group is left after ``grace`` s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # also pool children left by a killed parent
    process.wait(timeout=10)


@dataclass
class RedisServer:
    """A throwaway redis-server (no persistence) on a free port: it may be killed at will."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        command += ["--maxmemory-policy", "noeviction"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_for(lambda: _listening(self.port), timeout=10, what=f"redis-server on {self.port}")

    def kill(self) -> None:
        if self.process is not None:
            stop_process(self.process, grace=0.0)
            self.process = None
        wait_for(lambda: not _listening(self.port), timeout=10, what="redis-server to stop")


def write_library(root: Path, n: int, *, seconds: float = 13.0, first: int = 0) -> list[Path]:
    """``n`` distinct WAV tracks (a tone of its own plus seeded noise each), sorted by name."""
    root.mkdir(parents=True, exist_ok=True)
    sr = 22050
    t = np.arange(int(seconds * sr)) / sr
    paths = []
    for i in range(first, first + n):
        noise = np.random.default_rng(i).standard_normal(len(t))
        audio = 0.3 * np.sin(2 * np.pi * (110 + 23 * i) * t) + 0.05 * noise
        path = root / f"track{i:03d}.wav"
        sf.write(path, audio.astype(np.float32), sr, subtype="PCM_16")
        paths.append(path)
    return paths


@dataclass
class Cluster:
    """Environment and processes of one test's cluster."""

    env: dict[str, str]
    logs: Path
    db_name: str = ""
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def cli(self, *args: str, expect: int | None = 0) -> Result:
        """``genrectl ARGS`` in this process (fast); asserts the exit code unless None."""
        result = CliRunner(env=self.env).invoke(cli, list(args), catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, result.output
        return result

    def spawn(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        """``genrectl ARGS`` as a process of its own (its own session), output to a log."""
        with (self.logs / log).open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "cli.main", *args],
                cwd=REPO,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_worker(self, queues: str = "cpu", *, concurrency: int = 1, name: str) -> Worker:
        process = self.spawn("worker", "--queues", queues, "-c", str(concurrency), log=name)
        self.workers.append(process)
        worker = Worker(process, self.logs / name)
        wait_for(worker.ready, timeout=60, what=f"worker {name} to be ready", every=0.2)
        return worker

    def stop_workers(self) -> None:
        for process in self.workers:  # all at once: each finishes its task in parallel
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.workers:
            stop_process(process)
        self.workers.clear()

    def counts(self, batch_id: int) -> BatchCounts:
        with session_scope(self.settings) as session:
            return count_jobs(session, batch_id)

    def wait_batch(self, batch_id: int, *, timeout: float) -> BatchCounts:
        counts = wait_for(
            lambda: (c := self.counts(batch_id)).complete and c,
            timeout=timeout,
            what=f"batch #{batch_id} to complete ({self.counts(batch_id)})",
            every=0.2,
        )
        assert counts
        return counts

    def ingest_no_wait(self, root: Path) -> int:
        result = self.cli("ingest", str(root), "--no-wait", "--json")
        return int(_json(result)["batch_id"])

    def queued(self, batch_id: int) -> int:
        with session_scope(self.settings) as session:
            n = session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.batch_id == batch_id, Job.status == JobStatus.QUEUED)
            )
        return int(n or 0)


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.text()}")
        return " ready." in self.text()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []


def _json(result: Result) -> Any:
    import json

    return json.loads(result.stdout)


@contextmanager
def open_cluster(
    directory: Path, broker_url: str, env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """A cluster on ``broker_url`` with a fresh database, migrated (``genrectl db upgrade``)
    with ``env`` over the defaults below, and its files under ``directory``; its workers
    are stopped and its database dropped on the way out."""
    from db.engine import dispose_engines
    from tests.services import create_database, drop_database

    name, url = create_database()
    logs = directory / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    full = {
        "GENRECTL_HOME": str(directory / "home"),
        "GENRECTL_DATA_DIR": str(directory / "data"),
        "GENRECTL_DATABASE_URL": url,
        "GENRECTL_BROKER_URL": broker_url,
        "GENRECTL_CHUNK_SIZE": "2",
        # No bundled starter model: these tests run no gpu worker to label with it.
        "GENRECTL_STARTER_MODEL": "0",
        "GENRECTL_DEVICE": "cpu",
        **(env or {}),
    }
    running = Cluster(full, logs, db_name=name)
    try:
        running.cli("db", "upgrade")
        yield running
    finally:
        running.stop_workers()
        dispose_engines()
        drop_database(name)
