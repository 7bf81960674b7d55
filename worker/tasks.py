"""Celery tasks: thin wrappers. Ids in, the plain function called, its summary returned.

Arguments are checked before anything runs: a malformed message is rejected (logged and
dropped, never retried), never executed. Transient errors (a database or broker blip) are
retried with backoff, as declared on each task (scheduler.celery_app.RETRY_POLICY); so are
the machine's faults (no space, read-only storage, a bug), which never fail a track.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Reject
from celery.utils.time import get_exponential_backoff_interval

from genrectl.faults import as_fault
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
    from scheduler.pipeline import after_featurize, send
    from worker.features.featurize import featurize_chunk, featurize_redelivered

    batch_id, track_ids = _id("batch_id", batch_id), _ids("track_ids", track_ids)
    settings = Settings.from_env()
    # A message given back by a dead worker may hold a file that kills the process: go
    # carefully, one track at a time (see featurize_redelivered).
    redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
    featurize = featurize_redelivered if redelivered else featurize_chunk
    try:
        result = featurize(settings, batch_id=batch_id, track_ids=track_ids)
        # Committed: this worker sends the next stage (lost, reconcile sends it again).
        send(settings, after_featurize(settings, batch_id=batch_id, track_ids=track_ids))
    except TRANSIENT_ERRORS:
        raise  # retried with backoff; if it never recovers, the jobs stay queued for reconcile
    except Exception as exc:
        # The machine's fault (no space, read-only shard storage, a bug), never the files':
        # their jobs stay queued with the reason noted (`genrectl jobs show`), and the chunk is
        # tried again with backoff; after max_retries it waits for `genrectl reconcile`.
        fault = as_fault(exc, settings)
        log.error("featurize chunk of batch %d stopped: %s", batch_id, fault, exc_info=exc)
        _note_queued(settings, batch_id, track_ids, str(fault))
        raise task.retry(exc=fault, countdown=_backoff(task)) from exc
    if result.deferred:
        # An internal error on some tracks: they stay queued, tried again later (each fails
        # alone after MAX_ATTEMPTS tries, so the batch finishes).
        raise task.retry(countdown=_backoff(task))
    return {"done": result.done, "failed": result.failed, "skipped": result.skipped}


def _backoff(task: Task) -> int:
    """Seconds before the next try: the declared policy's exponential backoff with jitter."""
    return int(
        get_exponential_backoff_interval(
            factor=RETRY_POLICY["retry_backoff"],
            retries=task.request.retries,
            maximum=RETRY_POLICY["retry_backoff_max"],
            full_jitter=True,
        )
    )


def _note_queued(settings: Settings, batch_id: int, track_ids: list[int], reason: str) -> None:
    """Write why the chunk's still-queued jobs wait (best effort: the database may be what
    failed)."""
    from db.engine import session_scope
    from scheduler.batches import note_queued_jobs

    try:
        with session_scope(settings) as session:
            note_queued_jobs(session, batch_id, track_ids, reason)
    except Exception:
        log.warning("cannot note the reason on batch %d's jobs", batch_id, exc_info=True)


@shared_task(name=INFER_SHARD, **RETRY_POLICY)
def infer_shard_task(shard_id: int, model_id: int, track_ids: list[int] | None = None) -> int:
    from scheduler.pipeline import label_stage

    return label_stage(
        Settings.from_env(),
        shard_id=_id("shard_id", shard_id),
        model_id=_id("model_id", model_id),
        track_ids=None if track_ids is None else _ids("track_ids", track_ids),
    )


@shared_task(name=TRAIN)
def train_task(job_id: int | None = None, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """A training job's id (``spec``: a message from before training jobs had rows)."""
    if job_id is not None:
        from worker.training.cluster import run_train_job

        return run_train_job(Settings.from_env(), job_id=_id("job_id", job_id))
    from worker.training.job import TrainSpec, train_job

    if not isinstance(spec, dict):
        raise Reject(f"spec={spec!r} must be a JSON object", requeue=False)
    TrainSpec.from_dict(spec)  # refuse a malformed spec before anything runs
    return train_job(Settings.from_env(), spec=spec)
