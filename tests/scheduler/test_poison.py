"""Poison messages on the cpu queue are rejected and logged, never executed; the worker goes
on with the good work behind them."""

from __future__ import annotations

import base64
import json
import os
import pickle
import uuid
from pathlib import Path

import pytest
import redis

from scheduler.celery_app import create_app
from scheduler.cluster import queue_depths
from scheduler.tasknames import FEATURIZE_CHUNK
from tests.scheduler.cluster import Cluster, wait_for, write_library

pytestmark = [pytest.mark.services, pytest.mark.slow]


class _RunsCodeWhenUnpickled:
    """What an attacker would put in a pickle: unpickling it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def _pickle_message(marker: Path) -> bytes:
    """A Celery protocol-2 message in kombu's Redis envelope, its body a pickle."""
    task_id = str(uuid.uuid4())
    body = pickle.dumps(((_RunsCodeWhenUnpickled(marker),), {}, {}), protocol=2)
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "binary",
            "content-type": "application/x-python-serialize",
            "headers": {"lang": "py", "task": FEATURIZE_CHUNK, "id": task_id, "retries": 0},
            "properties": {
                "correlation_id": task_id,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": "cpu"},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    ).encode()


def test_poison_messages_are_rejected_never_executed(cluster: Cluster, tmp_path: Path) -> None:
    worker = cluster.start_worker("cpu", name="cpu")
    marker = tmp_path / "executed"
    redis.Redis.from_url(cluster.env["GENRECTL_BROKER_URL"]).lpush("cpu", _pickle_message(marker))
    app = create_app(cluster.settings)
    malformed = [
        {"kwargs": {"batch_id": "1; DROP TABLE tracks", "track_ids": [1]}},
        {"kwargs": {"batch_id": 1, "track_ids": "all"}},
        {"args": [1, [1], "surplus"]},
    ]
    for message in malformed:
        app.send_task(FEATURIZE_CHUNK, queue="cpu", ignore_result=True, **message)
    write_library(tmp_path / "music", 2, seconds=7.0)
    batch_id = cluster.ingest_no_wait(tmp_path / "music")  # queued behind the poison
    cluster.wait_batch(batch_id, timeout=60)
    assert cluster.counts(batch_id).done == 2
    log = worker.text()
    assert not marker.exists()
    assert "application/x-python-serialize" in log  # refused before decoding, and logged
    assert "must be an integer id" in log and "must be a list of integer ids" in log
    assert log.count("reject requeue=False") >= 2  # dropped, not retried nor requeued
    assert "positional arguments but 4 were given" in log  # failed before its body ran
    wait_for(lambda: queue_depths(cluster.settings)["cpu"] == 0, timeout=10, what="empty queue")
