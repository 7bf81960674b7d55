"""``genrectl worker``: a Celery worker for the cpu queue, the gpu queue, or both.

cpu: a prefork pool, one process per core by default, one torch thread per process (the
processes are the parallelism). gpu: one prefork process per GPU, each pinned to its GPU
through CUDA_VISIBLE_DEVICES in the child. CUDA does not survive fork, so the parent never
imports torch; each child initialises CUDA itself on its first task and keeps its model
loaded between tasks (worker.inference.label caches it per process).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from genrectl.errors import ConfigError, GenreError
from genrectl.settings import Settings
from scheduler.tasknames import CPU_QUEUE, GPU_QUEUE

log = logging.getLogger(__name__)
QUEUE_NAMES = (CPU_QUEUE, GPU_QUEUE)


@dataclass(frozen=True)
class WorkerPlan:
    queues: list[str]
    concurrency: int
    gpus: list[str]  # CUDA device ids, one per child process; empty: CPU only

    @property
    def role(self) -> str:
        return GPU_QUEUE if GPU_QUEUE in self.queues else CPU_QUEUE


def parse_queues(raw: str) -> list[str]:
    names = [q.strip() for q in raw.split(",") if q.strip()]
    if not names or any(q not in QUEUE_NAMES for q in names):
        raise ConfigError(f"--queues {raw!r}: the queues are cpu and gpu (comma-separated)")
    return sorted(set(names), key=QUEUE_NAMES.index)


def visible_gpus(env: Mapping[str, str]) -> list[str]:
    """GPU ids this host offers, found without initialising CUDA (no torch import)."""
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is not None:
        ids = [d.strip() for d in raw.split(",") if d.strip()]
        return [] if ids and ids[0] == "-1" else ids
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def plan_worker(
    queues: Sequence[str], concurrency: int | None, env: Mapping[str, str], cores: int
) -> WorkerPlan:
    if GPU_QUEUE not in queues:
        return WorkerPlan(list(queues), concurrency or cores, [])
    gpus = visible_gpus(env)
    if concurrency is not None and gpus and concurrency > len(gpus):
        raise ConfigError(f"--concurrency {concurrency}: only {len(gpus)} GPUs are visible")
    count = concurrency or max(1, len(gpus))
    return WorkerPlan(list(queues), count, gpus[:count])


def worker_argv(plan: WorkerPlan, *, loglevel: str, pid: int) -> list[str]:
    return [
        "worker",
        "--queues",
        ",".join(plan.queues),
        "--pool",
        "prefork",
        "--concurrency",
        str(plan.concurrency),
        f"--loglevel={loglevel}",
        # Unique per process, so several workers on one host answer `status` separately.
        "--hostname",
        f"{plan.role}-{pid}@%h",
        "--without-gossip",
        "--without-mingle",
    ]


def _in_child(plan: WorkerPlan, **_: Any) -> None:
    """Runs in each pool process right after fork, before its first task."""
    from billiard.process import current_process

    index = int(getattr(current_process(), "index", 0) or 0)
    if plan.role == GPU_QUEUE:
        if plan.gpus:
            os.environ["CUDA_VISIBLE_DEVICES"] = plan.gpus[index % len(plan.gpus)]
        return
    import torch

    torch.set_num_threads(1)


def _check_parent(**_: Any) -> None:
    """Runs in the parent before the pool forks: CUDA must not be initialised yet."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise GenreError("CUDA was initialised before the worker forked; it would not survive")


def run_worker(
    settings: Settings,
    *,
    queues: str,
    concurrency: int | None,
    loglevel: str,
    env: Mapping[str, str],
) -> None:
    """Run a worker in this process until it is stopped (SIGTERM: finish the running task).

    Its main process also runs the cluster's housekeeping (scheduler.periodic) once the
    worker is ready, and stops it on shutdown."""
    from celery import signals

    from scheduler.celery_app import create_app
    from scheduler.periodic import Housekeeper

    plan = plan_worker(parse_queues(queues), concurrency, env, os.cpu_count() or 1)
    if plan.role == GPU_QUEUE and not plan.gpus:
        log.warning("no GPU is visible: the gpu worker runs on the CPU")
    app = create_app(settings)
    app.conf.worker_hijack_root_logger = True  # a worker logs with timestamps and process names
    housekeeper = Housekeeper(settings, holder=f"{plan.role}-{os.getpid()}@{socket.gethostname()}")
    signals.worker_init.connect(_check_parent, weak=False)
    signals.worker_process_init.connect(lambda **kw: _in_child(plan, **kw), weak=False)
    signals.worker_ready.connect(lambda **_: housekeeper.start(), weak=False)
    signals.worker_shutdown.connect(lambda **_: housekeeper.stop(), weak=False)
    app.worker_main(worker_argv(plan, loglevel=loglevel, pid=os.getpid()))
