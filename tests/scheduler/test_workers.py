"""`genrectl worker`: how many processes, pinned to which GPU, and no CUDA before the fork."""

from __future__ import annotations

import subprocess
import sys

import pytest

from genrectl.errors import ConfigError
from scheduler.workers import WorkerPlan, parse_queues, plan_worker, visible_gpus, worker_argv
from tests.scheduler.cluster import REPO


def test_queues_are_cpu_and_gpu_only() -> None:
    assert parse_queues("gpu, cpu") == ["cpu", "gpu"]
    with pytest.raises(ConfigError, match="'cpu,video'"):
        parse_queues("cpu,video")


def test_a_cpu_worker_is_one_process_per_core_unless_told() -> None:
    assert plan_worker(["cpu"], None, {}, cores=8) == WorkerPlan(["cpu"], 8, [])
    assert plan_worker(["cpu"], 3, {}, cores=8).concurrency == 3


def test_a_gpu_worker_is_one_process_per_visible_gpu() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert plan_worker(["gpu"], None, env, cores=8) == WorkerPlan(["gpu"], 2, ["2", "3"])
    assert plan_worker(["gpu"], 1, env, cores=8).gpus == ["2"]
    with pytest.raises(ConfigError, match="only 2 GPUs"):
        plan_worker(["gpu"], 3, env, cores=8)
    cpu_only = {"CUDA_VISIBLE_DEVICES": "-1"}
    assert visible_gpus(cpu_only) == []
    assert plan_worker(["gpu"], None, cpu_only, cores=8) == WorkerPlan(["gpu"], 1, [])


def test_worker_argv_is_a_prefork_pool_with_a_unique_name() -> None:
    argv = worker_argv(WorkerPlan(["gpu"], 2, ["0", "1"]), loglevel="INFO", pid=42)
    assert argv[argv.index("--pool") + 1] == "prefork"
    assert argv[argv.index("--concurrency") + 1] == "2"
    assert argv[argv.index("--hostname") + 1] == "gpu-42@%h"


def test_the_worker_parent_never_imports_torch() -> None:
    """Everything the worker's parent process loads before it forks its pool: no torch, so
    CUDA cannot have been initialised when the children start."""
    code = (
        "import sys\n"
        "from genrectl.settings import Settings\n"
        "import cli.main, scheduler.workers\n"
        "from scheduler.celery_app import create_app\n"
        "app = create_app(Settings.from_env({'GENRECTL_BROKER_URL': 'redis://x:1/0'}))\n"
        "app.loader.import_default_modules()\n"
        "assert 'genrectl.featurize_chunk' in app.tasks\n"
        "print(sorted(m for m in ('torch', 'librosa', 'h5py') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
