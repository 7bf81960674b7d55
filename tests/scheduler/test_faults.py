"""Faults in the middle of a batch, on real Redis, PostgreSQL and worker processes: nothing
is lost, nothing is duplicated, every shard passes its checksum.

Recovery times are printed (run with -s to see them; bench/bench_cluster.py reports them).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from scheduler.cluster import live_workers, queue_depths
from tests.scheduler.cluster import Cluster, RedisServer, stop_process, wait_for, write_library
from tests.scheduler.library_state import assert_nothing_lost_or_duplicated
from tests.services import PG_HOST, PG_PORT

pytestmark = [pytest.mark.services, pytest.mark.slow]

N_TRACKS = 48
CHUNK = "6"  # tracks per task: long enough that a kill lands inside a task


def _start(cluster: Cluster, music: Path, *, concurrency: int = 1) -> int:
    """Two cpu workers and a batch of N_TRACKS, returned once its first chunk is done."""
    cluster.env["GENRECTL_CHUNK_SIZE"] = CHUNK
    write_library(music, N_TRACKS)
    for name in "ab":
        cluster.start_worker("cpu", concurrency=concurrency, name=name)
    batch_id = cluster.ingest_no_wait(music)
    wait_for(lambda: cluster.counts(batch_id).done >= 6, timeout=60, what="the first chunk")
    assert not cluster.counts(batch_id).complete, "the batch ended before the fault"
    return batch_id


def test_kill_9_of_a_pool_process_is_redelivered(cluster: Cluster, tmp_path: Path) -> None:
    batch_id = _start(cluster, tmp_path / "music")
    pid = cluster.workers[0].pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    killed = time.monotonic()
    os.kill(int(children[0]), signal.SIGKILL)  # what a decoder crash or the OOM killer does
    cluster.wait_batch(batch_id, timeout=120)
    print(f"\nkill -9 of a pool process: batch complete {time.monotonic() - killed:.1f} s later")
    assert_nothing_lost_or_duplicated(cluster.settings, batch_id, N_TRACKS)


def test_kill_9_of_a_whole_worker_then_reconcile(cluster: Cluster, tmp_path: Path) -> None:
    batch_id = _start(cluster, tmp_path / "music", concurrency=2)
    killed = time.monotonic()
    os.killpg(cluster.workers[1].pid, signal.SIGKILL)  # a node dies, its messages unacked
    report = cluster.cli("reconcile", "--grace", "0", "--json").stdout
    assert '"requeued_items": 0' not in report
    cluster.wait_batch(batch_id, timeout=120)
    print(f"\nkill -9 of a worker + reconcile: complete {time.monotonic() - killed:.1f} s later")
    assert_nothing_lost_or_duplicated(cluster.settings, batch_id, N_TRACKS)


def test_redis_restart_mid_batch_then_reconcile(
    cluster: Cluster, redis_server: RedisServer, tmp_path: Path
) -> None:
    batch_id = _start(cluster, tmp_path / "music")
    redis_server.kill()  # every queued message is gone: no persistence
    redis_server.start()
    restarted = time.monotonic()
    assert queue_depths(cluster.settings)["cpu"] == 0
    wait_for(
        lambda: len(live_workers(cluster.settings)) == 2,
        timeout=60,
        what="the workers to reconnect",
        every=0.5,
    )
    cluster.cli("reconcile", "--grace", "0")
    cluster.wait_batch(batch_id, timeout=120)
    print(f"\nRedis restart + reconcile: batch complete {time.monotonic() - restarted:.1f} s later")
    assert_nothing_lost_or_duplicated(cluster.settings, batch_id, N_TRACKS)


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(
        f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test", autocommit=True
    ) as conn:
        conn.execute(sql)


def test_postgres_connections_dropped_briefly(cluster: Cluster, tmp_path: Path) -> None:
    music = tmp_path / "music"
    cluster.env["GENRECTL_CHUNK_SIZE"] = CHUNK
    write_library(music, N_TRACKS)
    for name in "ab":
        cluster.start_worker("cpu", name=name)
    ingest = cluster.spawn("ingest", str(music), log="ingest.log")  # follows the batch
    try:
        batch_id = wait_for(lambda: _latest_batch(cluster), timeout=60, what="the batch")
        wait_for(lambda: cluster.counts(batch_id).done >= 6, timeout=60, what="the first chunk")
        _drop_connections_for(cluster.db_name, seconds=3.0)
        assert ingest.wait(timeout=120) == 0, (cluster.logs / "ingest.log").read_text()
    finally:
        stop_process(ingest, grace=1.0)
    logs = "".join((cluster.logs / n).read_text() for n in "ab")
    assert "Retry in" in logs  # tasks met the outage and were retried, not failed
    assert "database unavailable" in (cluster.logs / "ingest.log").read_text()
    assert_nothing_lost_or_duplicated(cluster.settings, batch_id, N_TRACKS)


def _latest_batch(cluster: Cluster) -> int | None:
    from sqlalchemy import func, select

    from db.engine import session_scope
    from db.models import Batch

    with session_scope(cluster.settings) as session:
        return session.scalar(select(func.max(Batch.id)))


def _drop_connections_for(database: str, *, seconds: float) -> None:
    """Refuse new connections to ``database`` and cut the open ones, for ``seconds``."""
    _admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            _admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
            )
            time.sleep(0.3)
    finally:
        _admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
