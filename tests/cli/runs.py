"""``genrectl`` run as a real process of its own, for tests that kill, interrupt or starve it.

Everything started here is waited for with a bound; ``Run.stop`` kills what is left of its
process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from sqlalchemy import select

from cli.main import cli
from db.engine import dispose_engines, session_scope
from db.models import Shard, Track
from genrectl.settings import Settings
from tests.scheduler.cluster import REPO, wait_for


def fault_env(tmp_path: Path, *, data_dir: Path | None = None) -> dict[str, str]:
    """An embedded home with the reference mel (no model to run: fast) and one segment per
    track, one track per chunk, two worker processes."""
    return {
        "GENRECTL_HOME": str(tmp_path / "home"),
        "GENRECTL_DATA_DIR": str(data_dir or tmp_path / "home" / "data"),
        "GENRECTL_STARTER_MODEL": "0",
        "GENRECTL_MAX_SEGMENTS": "1",
        "GENRECTL_CHUNK_SIZE": "1",
        "GENRECTL_WORKERS": "2",
        "GENRECTL_DEVICE": "cpu",
    }


def genrectl(env: dict[str, str], *args: str, expect: int | None = 0) -> Result:
    """``genrectl ARGS`` in this process (fast); asserts the exit code unless None."""
    try:
        result = CliRunner(env=env).invoke(cli, list(args), catch_exceptions=False)
    finally:
        dispose_engines()
    if expect is not None:
        assert result.exit_code == expect, result.output
    return result


def json_out(result: Result) -> Any:
    return json.loads(result.stdout)


@dataclass
class Run:
    """``genrectl ARGS`` as a process in a session of its own (so it has a process group
    to signal, as a terminal's foreground job does)."""

    process: subprocess.Popen[str]
    out: Path
    err: Path

    @classmethod
    def start(cls, env: dict[str, str], *args: str, logs: Path) -> Run:
        logs.mkdir(parents=True, exist_ok=True)
        name = f"{args[0]}-{time.monotonic_ns()}"
        out, err = logs / f"{name}.out", logs / f"{name}.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *args],
                cwd=REPO,
                env={**os.environ, **env},
                stdout=stdout,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        return cls(process, out, err)

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def children(self) -> list[int]:
        """Pids of the processes it started (its pool workers, the resource tracker)."""
        pid = self.process.pid
        path = Path(f"/proc/{pid}/task/{pid}/children")
        with contextlib.suppress(OSError):
            return [int(p) for p in path.read_text().split()]
        return []

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            message = f"genrectl did not finish in {timeout:g} s:\n{self.stderr}"
            raise AssertionError(message) from None

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_for_shards(settings: Settings, n: int, *, timeout: float = 90) -> None:
    """Until ``n`` shard files are committed (the batch is well under way)."""

    def committed() -> bool:
        try:
            with session_scope(settings) as session:
                return len(list(session.scalars(select(Shard.id)))) >= n
        except Exception:  # the schema may not exist yet
            return False
        finally:
            dispose_engines()

    wait_for(committed, timeout=timeout, what=f"{n} shards", every=0.05)


def track_statuses(settings: Settings) -> dict[str, int]:
    with session_scope(settings) as session:
        statuses = list(session.scalars(select(Track.status)))
    dispose_engines()
    return {s: statuses.count(s) for s in sorted(set(statuses))}


def leftovers(directory: Path) -> list[str]:
    """Temporary files under ``directory`` (none may survive a stop)."""
    return sorted(p.name for p in directory.rglob("*.tmp"))
