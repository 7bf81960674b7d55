"""Distributed mode: featurizing throughput with one and two CPU workers on the same batch,
and how long a batch takes to complete after a fault.

    .venv/bin/python bench/bench_cluster.py [--tracks 96] [--seconds 30] [--chunk 8]
    .venv/bin/python bench/bench_cluster.py --pipeline [--tracks 96] [--seconds 30] [--chunk 8]

Needs redis-server on the PATH and PostgreSQL on 127.0.0.1:5432 (trust auth, database
`test`), as the `services` tests do; it starts its own redis-server on a free port and its
own databases, and real `genrectl worker` processes (one pool process each). Inputs are
generated tracks (a tone of its own plus noise each, 22050 Hz mono WAV), all distinct.

Throughput: each worker first runs a small warm-up batch (imports, first task), then the
timed batch goes from `ingest --no-wait` to the last job recorded, read from the database.
Recovery: the batch runs on two workers; after its first chunk the fault is injected, and
the time until the batch completes is printed beside the time the remaining work takes
without a fault (remaining tracks / two-worker throughput): the difference is the cost.

Results on this project's 2-core development VM (python-svc; Redis, PostgreSQL, the
workers and the bench share the two cores, and another benchmark held about one core
throughout, so the speed-up is a floor), 2026-11-24, with
`.venv/bin/python bench/bench_cluster.py --tracks 96 --seconds 30 --chunk 8`:

    96 tracks of 30 s, 8 tracks per task
    cpu workers                         tracks/s
    1                                       26.4
    2                                       40.0
    speed-up, two workers over one          1.51

    fault after the first chunk         complete after  no-fault time
    kill -9 of a pool process                    6.0 s          2.0 s
    kill -9 of a worker, reconcile               3.0 s          2.2 s
    Redis restart, reconcile                    10.9 s          2.0 s

A killed pool process is replaced (cold imports) and its chunk redelivered at once, then
run one track per transaction; after a Redis restart the workers reconnect (about 2 s of
backoff), their running tasks are cancelled and redone, and reconcile re-enqueues the rest.

--pipeline: the whole pipeline with nobody waiting. A fresh database whose `db upgrade`
registered the starter model, two cpu workers and one gpu worker (one pool process each;
the gpu worker on the CPU here), warmed up by a small batch; then the time from `ingest
--no-wait` to the last track labelled, read from the database. Once without a fault, once
with a whole cpu worker killed with kill -9 after the first chunk, healed by the workers'
periodic reconcile (its default settings: every 30 s, work lost for 60 s) with no command
typed. Results are in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scheduler.cluster import live_workers
from tests.scheduler.cluster import Cluster, RedisServer, open_cluster, wait_for, write_library


def _ready(cluster: Cluster, workers: int, music: Path, warmup: Path) -> None:
    for i in range(workers):
        cluster.start_worker("cpu", name=f"cpu-{i}")
    batch_id = cluster.ingest_no_wait(warmup)  # every pool process imports and runs once
    cluster.wait_batch(batch_id, timeout=300)


def throughput(base: Path, music: Path, warmup: Path, *, workers: int, chunk: int) -> float:
    """Tracks per second of one batch on ``workers`` warmed-up cpu workers."""
    server = RedisServer(base / f"redis-{workers}")
    server.start()
    try:
        with open_cluster(base / f"throughput-{workers}", server.url) as cluster:
            cluster.env["GENRECTL_CHUNK_SIZE"] = str(chunk)
            _ready(cluster, workers, music, warmup)
            start = time.monotonic()
            batch_id = cluster.ingest_no_wait(music)
            counts = cluster.wait_batch(batch_id, timeout=1800)
            return counts.done / (time.monotonic() - start)
    finally:
        server.kill()


def _kill_pool_process(cluster: Cluster, server: RedisServer) -> None:
    pid = cluster.workers[0].pid
    child = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0]
    os.kill(int(child), signal.SIGKILL)


def _kill_worker_and_reconcile(cluster: Cluster, server: RedisServer) -> None:
    os.killpg(cluster.workers[1].pid, signal.SIGKILL)
    cluster.cli("reconcile", "--grace", "0")


def _restart_redis_and_reconcile(cluster: Cluster, server: RedisServer) -> None:
    server.kill()
    server.start()
    wait_for(lambda: len(live_workers(cluster.settings)) == 2, timeout=120, what="reconnect")
    cluster.cli("reconcile", "--grace", "0")


FAULTS: dict[str, Callable[[Cluster, RedisServer], None]] = {
    "kill -9 of a pool process": _kill_pool_process,
    "kill -9 of a worker, reconcile": _kill_worker_and_reconcile,
    "Redis restart, reconcile": _restart_redis_and_reconcile,
}


def recovery(base: Path, name: str, music: Path, warmup: Path, *, chunk: int) -> tuple[float, int]:
    """(seconds from the fault to the batch's completion, tracks left at the fault)."""
    server = RedisServer(base / f"redis-{len(name)}")
    server.start()
    try:
        with open_cluster(base / name.replace(" ", "_"), server.url) as cluster:
            cluster.env["GENRECTL_CHUNK_SIZE"] = str(chunk)
            _ready(cluster, 2, music, warmup)
            batch_id = cluster.ingest_no_wait(music)
            wait_for(lambda: cluster.counts(batch_id).done >= chunk, timeout=300, what="chunk")
            left = cluster.counts(batch_id).total - cluster.counts(batch_id).finished
            faulted = time.monotonic()
            FAULTS[name](cluster, server)
            counts = cluster.wait_batch(batch_id, timeout=1800)
            assert counts.done == counts.total, counts
            return time.monotonic() - faulted, left
    finally:
        server.kill()


def pipeline_time(base: Path, music: Path, warmup: Path, *, chunk: int, kill: bool) -> float:
    """Seconds from `ingest --no-wait` to the whole batch featurized and labelled by two cpu
    workers and a gpu worker (``kill``: a cpu worker killed with kill -9 after the first
    chunk, the periodic reconcile left to heal it)."""
    server = RedisServer(base / f"redis-pipeline-{kill}")
    server.start()
    env = {"GENRECTL_STARTER_MODEL": "1", "GENRECTL_CHUNK_SIZE": str(chunk)}
    try:
        with open_cluster(base / f"pipeline-{kill}", server.url, env) as cluster:
            for name in ("cpu-0", "cpu-1"):
                cluster.start_worker("cpu", name=name)
            cluster.start_worker("gpu", name="gpu")
            cluster.wait_batch(cluster.ingest_no_wait(warmup), timeout=600)
            start = time.monotonic()
            batch_id = cluster.ingest_no_wait(music)
            if kill:
                wait_for(lambda: cluster.counts(batch_id).done >= chunk, timeout=600, what="chunk")
                os.killpg(cluster.workers[1].pid, signal.SIGKILL)
            counts = cluster.wait_batch(batch_id, timeout=1800)
            assert counts.label.done == counts.done == counts.total, counts
            return time.monotonic() - start
    finally:
        server.kill()


def pipeline(base: Path, music: Path, warmup: Path, args: argparse.Namespace) -> None:
    runs = {
        "no fault": pipeline_time(base, music, warmup, chunk=args.chunk, kill=False),
        "kill -9 of a cpu worker after the first chunk": pipeline_time(
            base, music, warmup, chunk=args.chunk, kill=True
        ),
    }
    print(
        f"\n{args.tracks} tracks of {args.seconds:g} s, {args.chunk} tracks per task, starter model"
    )
    print("2 cpu workers + 1 gpu worker (one process each), warmed up; no client after --no-wait")
    print(f"{'run':<48}{'--no-wait to all labelled':>28}")
    for name, seconds in runs.items():
        print(f"{name:<48}{seconds:>26.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--pipeline", action="store_true", help="featurize + label, no client")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        base = Path(tmp)
        music = base / "music"
        write_library(music, args.tracks, seconds=args.seconds)
        warmup = base / "warmup"
        warm = (2 if args.pipeline else 4) * args.chunk  # every pool process runs once
        write_library(warmup, warm, seconds=args.seconds, first=10_000)
        if args.pipeline:
            pipeline(base, music, warmup, args)
            return
        rates = {n: throughput(base, music, warmup, workers=n, chunk=args.chunk) for n in (1, 2)}
        print(f"\n{args.tracks} tracks of {args.seconds:g} s, {args.chunk} tracks per task")
        print(f"{'cpu workers':<34}{'tracks/s':>10}")
        for n, rate in rates.items():
            print(f"{n:<34}{rate:>10.1f}")
        print(f"{'speed-up, two workers over one':<34}{rates[2] / rates[1]:>10.2f}")
        print(f"\n{'fault after the first chunk':<34}{'complete after':>16}{'no-fault time':>15}")
        for name in FAULTS:
            seconds, left = recovery(base, name, music, warmup, chunk=args.chunk)
            print(f"{name:<34}{seconds:>14.1f} s{left / rates[2]:>13.1f} s")


if __name__ == "__main__":
    main()
