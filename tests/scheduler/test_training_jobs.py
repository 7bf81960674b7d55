"""Training on the cluster, for real: a training job row, a real gpu worker (on the CPU here),
and a worker killed with kill -9 mid-training whose job reconcile sends again and a new
worker resumes from the last checkpoint."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from db.engine import session_scope
from db.models import TrainJob
from tests.scheduler.cluster import Cluster, wait_for
from tests.worker.training.test_job import make_labelled_folder

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _job(cluster: Cluster, job_id: int) -> TrainJob:
    with session_scope(cluster.settings) as session:
        job = session.get(TrainJob, job_id)
        assert job is not None
        return job


def _train(cluster: Cluster, data: Path, *args: str) -> dict[str, Any]:
    command = ["train", str(data), "--arch", "cnn", "--batch-size", "8", *args, "--json"]
    return dict(json.loads(cluster.cli(*command).stdout))


def test_a_training_job_runs_on_a_gpu_worker(cluster: Cluster, tmp_path: Path) -> None:
    data = make_labelled_folder(tmp_path / "labelled")
    queued = _train(cluster, data, "--epochs", "1", "--name", "later", "--no-wait")
    assert queued["queued"] and queued["name"] == "later"
    status = json.loads(cluster.cli("status", "--json").stdout)
    assert [(j["name"], j["status"]) for j in status["training_jobs"]] == [("later", "queued")]
    cluster.start_worker("gpu", name="gpu")
    summary = _train(cluster, data, "--epochs", "1", "--name", "now")  # waits for the model
    assert summary["name"] == "now" and summary["track_accuracy"] is not None
    wait_for(lambda: _job(cluster, queued["train_job"]).status == "done", timeout=120, what="later")
    taken = cluster.cli("train", str(data), "--arch", "cnn", "--name", "now", expect=None)
    assert taken.exit_code == 2 and "exists" in taken.output


def test_reconcile_resumes_a_killed_workers_training_from_its_checkpoint(
    cluster: Cluster, tmp_path: Path
) -> None:
    data = make_labelled_folder(tmp_path / "labelled")
    first = cluster.start_worker("gpu", name="gpu-1")
    job_id = _train(cluster, data, "--epochs", "12", "--name", "resumed", "--no-wait")["train_job"]
    wait_for(
        lambda: _job(cluster, job_id).progress.get("epoch", 0) >= 2,
        timeout=180,
        what="two epochs checkpointed",
        every=0.05,
    )
    os.killpg(first.process.pid, signal.SIGKILL)  # the node dies mid-training
    killed_at = _job(cluster, job_id).progress["epoch"]
    assert killed_at < 12, "training ended before the kill"
    cluster.start_worker("gpu", name="gpu-2")
    # The heart has stopped (its holder's process is gone from this host): lost at once.
    report = json.loads(cluster.cli("reconcile", "--grace", "0", "--json").stdout)
    from scheduler.trainjobs import describe

    assert report["training"] == [job_id], describe(_job(cluster, job_id))
    wait_for(lambda: _job(cluster, job_id).status == "done", timeout=300, what="the model")
    job = _job(cluster, job_id)
    assert job.attempts == 2 and job.model_id is not None and job.error is None
    assert job.progress["resumed_after"] >= killed_at  # not from epoch 1 again
    log = (cluster.logs / "gpu-2").read_text()
    assert "resuming" in log and f"after epoch {job.progress['resumed_after']}" in log
    again = json.loads(cluster.cli("reconcile", "--grace", "0", "--json").stdout)
    assert again["training"] == []  # done: nothing to resume
    models = {m["name"] for m in json.loads(cluster.cli("models", "list", "--json").stdout)}
    assert "resumed" in models
