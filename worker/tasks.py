"""Celery tasks: thin wrappers. Ids in, the plain function called, its summary returned.

Arguments are checked before anything runs: a malformed message is rejected (logged and
dropped, never retried), never executed. Transient errors (a database or broker blip) are
retried with backoff, as declared on each task (scheduler.celery_app.RETRY_POLICY).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Reject

from genrectl.settings import Settings
from scheduler.celery_app import RETRY_POLICY, TRANSIENT_ERRORS
from scheduler.tasknames import FEATURIZE_CHUNK, INFER_SHARD, TRAIN

log = logging.getLogger(__name__)


def _ids(name: str, value: Any) -> list[int]:
    if not isinstance(value, list) or not all(type(v) is int for v in value):
        raise Reject(f"{name}={value!r} must be a list of integer ids", requeue=False)
    return value


def _id(name: str, value: Any) -> int:
    if type(value) is not int:
        raise Reject(f"{name}={value!r} must be an integer id", requeue=False)
    return value


@shared_task(name=FEATURIZE_CHUNK, bind=True, **RETRY_POLICY)
def featurize_chunk_task(task: Task, batch_id: int, track_ids: list[int]) -> dict[str, Any]:
    from worker.features.featurize import featurize_chunk, featurize_redelivered

    batch_id, track_ids = _id("batch_id", batch_id), _ids("track_ids", track_ids)
    settings = Settings.from_env()
    # A message given back by a dead worker may hold a file that kills the process: go
    # carefully, one track at a time (see featurize_redelivered).
    redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
    featurize = featurize_redelivered if redelivered else featurize_chunk
    try:
        result = featurize(settings, batch_id=batch_id, track_ids=track_ids)
    except TRANSIENT_ERRORS:
        raise  # retried with backoff; if it never recovers, the jobs stay queued for reconcile
    except Exception as exc:
        # A bug, not a bad file (those fail alone inside the chunk): fail the chunk's jobs so
        # the batch still finishes, as the embedded runner does.
        log.exception("featurize chunk of batch %d failed", batch_id)
        _fail_chunk(settings, batch_id, track_ids, f"internal error: {type(exc).__name__}: {exc}")
        raise
    return {"done": result.done, "failed": result.failed, "skipped": result.skipped}


def _fail_chunk(settings: Settings, batch_id: int, track_ids: list[int], reason: str) -> None:
    from db.engine import session_scope
    from scheduler.batches import fail_queued_jobs

    with session_scope(settings) as session:
        fail_queued_jobs(session, batch_id, track_ids, reason)


@shared_task(name=INFER_SHARD, **RETRY_POLICY)
def infer_shard_task(shard_id: int, model_id: int, track_ids: list[int] | None = None) -> int:
    from worker.inference.label import infer_shard

    return infer_shard(
        Settings.from_env(),
        shard_id=_id("shard_id", shard_id),
        model_id=_id("model_id", model_id),
        track_ids=None if track_ids is None else _ids("track_ids", track_ids),
    )


@shared_task(name=TRAIN)
def train_task(spec: dict[str, Any]) -> dict[str, Any]:
    from worker.training.job import TrainSpec, train_job

    if not isinstance(spec, dict):
        raise ValueError(f"spec={spec!r} must be a JSON object")
    TrainSpec.from_dict(spec)  # refuse a malformed spec before anything runs
    return train_job(Settings.from_env(), spec=spec)
