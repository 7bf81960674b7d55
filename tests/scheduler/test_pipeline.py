"""The cluster finishes a batch on its own, on real Redis, PostgreSQL and worker processes: a
fresh database (the starter registered by `db upgrade`, no model by hand), `ingest
--no-wait`, then no client at all; and the same through a kill -9 and a Redis restart,
healed by the workers' periodic reconcile with no command typed."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.audio_fixtures import make_bad
from tests.scheduler.cluster import Cluster, RedisServer, open_cluster, wait_for, write_library
from tests.scheduler.library_state import assert_nothing_lost_or_duplicated
from tests.services import require_postgres

pytestmark = [pytest.mark.services, pytest.mark.slow]

BAD = ("text_wav.wav",)


@pytest.fixture
def starter_cluster(tmp_path: Path, redis_server: RedisServer) -> Iterator[Cluster]:
    """A cluster whose `db upgrade` registered the bundled starter, with a quick periodic
    reconcile (every 2 s, for work lost for 3 s) in its workers."""
    require_postgres()
    env = {
        "GENRECTL_STARTER_MODEL": "1",
        "GENRECTL_CHUNK_SIZE": "3",
        "GENRECTL_RECONCILE_INTERVAL": "2",
        "GENRECTL_RECONCILE_GRACE": "3",
    }
    with open_cluster(tmp_path, redis_server.url, env) as cluster:
        yield cluster


def _library(root: Path, n: int) -> None:
    write_library(root, n)
    make_bad(root, "text_wav")


def _workers(cluster: Cluster) -> None:
    for name in ("cpu-a", "cpu-b"):
        cluster.start_worker("cpu", name=name)
    cluster.start_worker("gpu", name="gpu")


def test_the_workers_featurize_and_label_a_batch_nobody_waits_for(
    starter_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = starter_cluster
    (model,) = json.loads(cluster.cli("models", "list", "--json").stdout)
    assert (model["name"], model["promoted"]) == ("starter-encoders", True)
    _library(tmp_path / "music", 9)
    _workers(cluster)
    batch_id = cluster.ingest_no_wait(tmp_path / "music")
    # From here on no genrectl client runs: the test only reads the database.
    cluster.wait_batch(batch_id, timeout=300)
    assert_nothing_lost_or_duplicated(cluster.settings, batch_id, 9, failed=BAD)
    shown = json.loads(cluster.cli("jobs", "show", str(batch_id), "--json").stdout)
    assert shown["stages"]["label"] == {
        "total": 10,
        "done": 9,
        "failed": 0,
        "cancelled": 1,  # the bad file: it was never featurized
        "queued": 0,
    }
    assert (shown["done"], shown["failed"], shown["labelling"]) == (9, 1, 0)
    assert [item["stage"] for item in shown["failed_items"]] == ["featurize"]


def test_a_kill_9_and_a_redis_restart_heal_with_no_command_typed(
    starter_cluster: Cluster, redis_server: RedisServer, tmp_path: Path
) -> None:
    cluster = starter_cluster
    _library(tmp_path / "music", 24)
    _workers(cluster)
    batch_id = cluster.ingest_no_wait(tmp_path / "music")
    wait_for(lambda: cluster.counts(batch_id).done >= 3, timeout=120, what="the first chunk")
    doomed = cluster.workers[1]
    os.killpg(doomed.pid, signal.SIGKILL)  # a node dies, a chunk unacknowledged in its hands
    killed = time.monotonic()
    wait_for(lambda: _healed(cluster), timeout=60, what="a periodic reconcile to send it again")
    redis_server.kill()  # every queued message is gone: no persistence
    redis_server.start()
    assert not cluster.counts(batch_id).complete, "the batch ended before the Redis restart"
    cluster.wait_batch(batch_id, timeout=300)
    print(f"\nkill -9 then Redis restart: batch complete {time.monotonic() - killed:.1f} s later")
    assert_nothing_lost_or_duplicated(cluster.settings, batch_id, 24, failed=BAD)
    status = json.loads(cluster.cli("status", "--json").stdout)
    assert status["housekeeping"]["reconcile"]["holder"].split("-")[0] in ("cpu", "gpu")
    assert status["running_batches"] == [] and status["cluster"]["warnings"] == []


def _healed(cluster: Cluster) -> bool:
    logs = "".join((cluster.logs / name).read_text() for name in ("cpu-a", "gpu"))
    return "lost work sent again" in logs
