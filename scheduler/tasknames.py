"""Task names and the plain functions behind them.

The CLI enqueues by name and never imports worker code; the embedded runner resolves the
same names to the same plain functions and calls them in local processes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

FEATURIZE_CHUNK = "genrectl.featurize_chunk"
INFER_SHARD = "genrectl.infer_shard"
TRAIN = "genrectl.train"

CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"

FUNCTIONS: dict[str, str] = {
    FEATURIZE_CHUNK: "worker.features.featurize:featurize_chunk",
    INFER_SHARD: "worker.inference.label:infer_shard",
    TRAIN: "worker.training.cluster:run_train_job",
}

ROUTES: dict[str, dict[str, str]] = {
    FEATURIZE_CHUNK: {"queue": CPU_QUEUE},
    INFER_SHARD: {"queue": GPU_QUEUE},
    TRAIN: {"queue": GPU_QUEUE},
}


def resolve(name: str) -> Callable[..., Any]:
    """The plain function that the task ``name`` wraps (imports worker code: workers only)."""
    module, _, attr = FUNCTIONS[name].partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return function
