"""Operating a batch without workers: --no-wait, status, jobs list|show|retry|cancel,
reconcile after Redis lost its messages, and a waiting CLI that says no worker is live."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from db.engine import session_scope
from scheduler.batches import fail_queued_jobs
from scheduler.cluster import queued_messages
from scheduler.tasknames import FEATURIZE_CHUNK
from tests.scheduler.cluster import Cluster, stop_process, wait_for, write_library

pytestmark = pytest.mark.services


def _queued_chunks(cluster: Cluster) -> list[tuple[int, list[int]]]:
    """(batch id, track ids) of each featurize message waiting in the cpu queue."""
    chunks = []
    for name, args, kwargs in queued_messages(cluster.settings, "cpu"):
        assert name == FEATURIZE_CHUNK and not args
        chunks.append((kwargs["batch_id"], kwargs["track_ids"]))
    return sorted(chunks)


def test_no_wait_returns_the_batch_and_status_shows_the_queue(
    cluster: Cluster, tmp_path: Path
) -> None:
    write_library(tmp_path / "music", 5, seconds=7.0)
    batch_id = cluster.ingest_no_wait(tmp_path / "music")
    chunks = _queued_chunks(cluster)
    assert [len(ids) for _, ids in chunks] == [2, 2, 1]  # GENRECTL_CHUNK_SIZE=2
    assert {b for b, _ in chunks} == {batch_id}
    status = json.loads(cluster.cli("status", "--json").stdout)
    assert status["cluster"]["queues"] == {"cpu": 3, "gpu": 0}
    assert status["cluster"]["workers"] == [] and status["cluster"]["error"] is None
    (running,) = status["running_batches"]
    assert (running["id"], running["stages"]["featurize"]["queued"]) == (batch_id, 5)
    assert running["stages"]["label"]["total"] == 0  # no model in this cluster
    text = cluster.cli("status").stdout
    assert "Workers: none live" in text and f"Running batch #{batch_id} (ingest)" in text
    (listed,) = json.loads(cluster.cli("jobs", "list", "--json").stdout)
    assert (listed["id"], listed["status"], listed["queued"], listed["total"]) == (
        batch_id,
        "running",
        5,
        5,
    )
    shown = json.loads(cluster.cli("jobs", "show", str(batch_id), "--json").stdout)
    assert len(shown["queued_items"]) == 5 and shown["failed_items"] == []
    assert cluster.cli("jobs", "show", "999", expect=3).exit_code == 3


def test_no_wait_needs_distributed_mode(cluster: Cluster, tmp_path: Path) -> None:
    write_library(tmp_path / "music", 1, seconds=7.0)
    embedded = {**cluster.env, "GENRECTL_BROKER_URL": ""}
    from click.testing import CliRunner

    from cli.main import cli

    result = CliRunner(env=embedded).invoke(cli, ["ingest", str(tmp_path / "music"), "--no-wait"])
    assert result.exit_code == 2 and "distributed mode" in result.output


def test_reconcile_reenqueues_what_a_flushed_redis_lost(cluster: Cluster, tmp_path: Path) -> None:
    write_library(tmp_path / "music", 5, seconds=7.0)
    batch_id = cluster.ingest_no_wait(tmp_path / "music")
    before = _queued_chunks(cluster)
    redis.Redis.from_url(cluster.env["GENRECTL_BROKER_URL"]).flushall()
    young = json.loads(cluster.cli("reconcile", "--json").stdout)
    assert young["requeued_items"] == 0  # inside the grace period: its ingest may be enqueueing
    report = json.loads(cluster.cli("reconcile", "--grace", "0", "--json").stdout)
    assert report["requeued"] == {str(batch_id): 5} and report["chunks"] == 3
    assert _queued_chunks(cluster) == before


def test_cancel_takes_queued_work_off_the_queue(cluster: Cluster, tmp_path: Path) -> None:
    write_library(tmp_path / "music", 4, seconds=7.0)
    first = cluster.ingest_no_wait(tmp_path / "music")
    write_library(tmp_path / "more", 2, seconds=7.0, first=10)
    second = cluster.ingest_no_wait(tmp_path / "more")
    result = json.loads(cluster.cli("jobs", "cancel", str(first), "--json").stdout)
    assert result == {"batch_id": first, "cancelled": 4, "messages_removed": 2}
    assert {b for b, _ in _queued_chunks(cluster)} == {second}  # the other batch is untouched
    shown = json.loads(cluster.cli("jobs", "show", str(first), "--json").stdout)
    assert (shown["status"], shown["cancelled"], shown["queued"]) == ("cancelled", 4, 0)
    reconciled = json.loads(cluster.cli("reconcile", "--grace", "0", "--json").stdout)
    assert reconciled["requeued"] == {}  # the other batch's messages are still queued
    forced = "reconcile", "--grace", "0", "--everything", "--json"
    reconciled = json.loads(cluster.cli(*forced).stdout)
    assert reconciled["requeued"] == {str(second): 2}  # nothing of the cancelled batch


def test_retry_reenqueues_only_the_failed_items(cluster: Cluster, tmp_path: Path) -> None:
    write_library(tmp_path / "music", 5, seconds=7.0)
    batch_id = cluster.ingest_no_wait(tmp_path / "music")
    redis.Redis.from_url(cluster.env["GENRECTL_BROKER_URL"]).flushall()
    shown = json.loads(cluster.cli("jobs", "show", str(batch_id), "--json").stdout)
    failed = sorted(item["track_id"] for item in shown["queued_items"][:2])
    with session_scope(cluster.settings) as session:
        fail_queued_jobs(session, batch_id, failed, "cannot decode: test")
    result = json.loads(cluster.cli("jobs", "retry", str(batch_id), "--no-wait", "--json").stdout)
    assert result == {"batch_id": batch_id, "retried": 2, "chunks": 1}
    assert _queued_chunks(cluster) == [(batch_id, failed)]
    shown = json.loads(cluster.cli("jobs", "show", str(batch_id), "--json").stdout)
    assert (shown["status"], shown["failed"], shown["queued"]) == ("running", 0, 5)


def test_a_waiting_ingest_says_when_no_worker_is_live(cluster: Cluster, tmp_path: Path) -> None:
    write_library(tmp_path / "music", 2, seconds=7.0)
    process = cluster.spawn("ingest", str(tmp_path / "music"), log="ingest.log")
    try:
        text = wait_for(
            lambda: "no live worker" in (log := (cluster.logs / "ingest.log").read_text()) and log,
            timeout=30,
            what="the no-worker warning",
            every=0.3,
        )
    finally:
        stop_process(process, grace=2.0)
    assert "genrectl worker --queues cpu" in text and "jobs show" in text


def test_a_dead_broker_at_enqueue_leaves_the_batch_for_reconcile(
    cluster: Cluster, tmp_path: Path
) -> None:
    from tests.scheduler.cluster import free_port

    write_library(tmp_path / "music", 2, seconds=7.0)
    cluster.env["GENRECTL_BROKER_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    result = cluster.cli("ingest", str(tmp_path / "music"), "--no-wait", expect=1)
    assert "Batch #1 is saved: `genrectl reconcile`" in result.output
    shown = json.loads(cluster.cli("jobs", "show", "1", "--json").stdout)
    assert (shown["status"], shown["queued"]) == ("running", 2)


def test_status_warns_when_the_gpu_queue_has_work_and_no_worker(cluster: Cluster) -> None:
    from scheduler.runner import send_tasks
    from scheduler.tasknames import INFER_SHARD

    send_tasks(cluster.settings, INFER_SHARD, [{"shard_id": 1, "model_id": 1, "track_ids": [1]}])
    cluster.start_worker("cpu", name="cpu")
    status = json.loads(cluster.cli("status", "--json").stdout)["cluster"]
    assert status["queues"] == {"cpu": 0, "gpu": 1}
    assert status["workers_per_queue"] == {"cpu": 1, "gpu": 0}
    (warning,) = status["warnings"]
    assert "'gpu' queue holds 1 messages" in warning and "genrectl worker --queues gpu" in warning
    text = cluster.cli("status").stdout
    assert "gpu 1 waiting (0 workers)" in text and f"warning: {warning}" in text
