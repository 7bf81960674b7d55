"""Distributed mode for real: a Celery worker process consuming from Redis, PostgreSQL results."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from db.engine import dispose_engines
from tests.audio_fixtures import make_bad, render
from tests.cli.conftest import json_of
from tests.services import create_database, drop_database, require_redis

pytestmark = pytest.mark.services


@pytest.fixture
def cluster_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    require_redis()
    name, url = create_database()
    env = {
        "GENRECTL_HOME": str(tmp_path / "home"),
        "GENRECTL_DATA_DIR": str(tmp_path / "data"),
        "GENRECTL_DATABASE_URL": url,
        # A db number of its own so parallel runs never share queues; never flushed.
        "GENRECTL_BROKER_URL": f"redis://127.0.0.1:6379/{random.randint(1, 15)}",
        "GENRECTL_CHUNK_SIZE": "2",
        # No bundled starter model: these tests run no gpu worker to label with it.
        "GENRECTL_STARTER_MODEL": "0",
    }
    yield env
    dispose_engines()
    drop_database(name)


@pytest.fixture
def cpu_worker(cluster_env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, **cluster_env}
    subprocess.run([sys.executable, "-m", "cli.main", "db", "upgrade"], env=env, check=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker", "--queues", "cpu", "-c", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    yield process
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def test_ingest_through_a_celery_worker(
    cluster_env: dict[str, str], cpu_worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    root = tmp_path / "music"
    for name in ("wav_pcm16", "flac", "mp3"):
        render(root, name, seconds=7.0)
    make_bad(root, "text_wav")
    runner = CliRunner(env=cluster_env)
    result = runner.invoke(cli, ["ingest", str(root), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json_of(result)
    assert report["featurized"] == 3
    assert [Path(f["path"]).name for f in report["failed"]] == ["text_wav.wav"]
    status = json_of(runner.invoke(cli, ["status", "--json"]))
    assert status["mode"] == "distributed" and status["segments"] == 3
