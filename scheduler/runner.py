"""Run a batch's chunks: in local processes (embedded mode) or on Celery workers.

Either way progress is read from the database, so the same progress bar follows both.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from db.engine import session_scope
from genrectl.settings import Settings
from scheduler.batches import (
    BatchCounts,
    count_jobs,
    fail_queued_jobs,
    queued_track_ids,
    refresh_batch,
)
from scheduler.tasknames import CPU_QUEUE, FEATURIZE_CHUNK, ROUTES, resolve

log = logging.getLogger(__name__)
Progress = Callable[[BatchCounts], None]
Notify = Callable[[str], None]  # a one-line message for the user
POLL_S = 0.5


def _init_process(settings: Settings) -> None:
    """Runs first in every embedded worker process: log to a file, one torch thread each."""
    log_dir = settings.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / "worker.log"
    logging.basicConfig(
        filename=log_file,
        level=logging.INFO,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    # Decoders (libmpg123, ffmpeg) write warnings straight to fd 2; keep them off the
    # user's terminal and in the log instead.
    with log_file.open("ab") as handle:
        os.dup2(handle.fileno(), 2)
    import torch

    torch.set_num_threads(1)


def _call(name: str, settings: Settings, kwargs: dict[str, Any]) -> Any:
    return resolve(name)(settings, **kwargs)


def run_featurize(
    settings: Settings,
    batch_id: int,
    chunks: Sequence[list[int]],
    on_progress: Progress,
    notify: Notify | None = None,
) -> BatchCounts:
    """Featurize every chunk of the batch and return the final counts."""
    if settings.embedded:
        _run_embedded(settings, batch_id, list(chunks), on_progress)
    else:
        enqueue_featurize(settings, batch_id, chunks)
        wait_for_batch(settings, batch_id, on_progress, notify)
    with session_scope(settings) as session:
        return refresh_batch(session, batch_id)


def enqueue_featurize(settings: Settings, batch_id: int, chunks: Sequence[list[int]]) -> int:
    """Send one message per chunk, by task name, over one connection; returns how many.

    The batch is committed before this runs, so a message lost here (or later) is
    re-derived from the database by ``genrectl reconcile``.
    """
    from scheduler.cluster import BrokerUnavailable

    try:
        return send_tasks(
            settings, FEATURIZE_CHUNK, [{"batch_id": batch_id, "track_ids": c} for c in chunks]
        )
    except BrokerUnavailable as exc:
        raise BrokerUnavailable(
            f"{exc}. Batch #{batch_id} is saved: `genrectl reconcile` enqueues it once the "
            "broker works."
        ) from exc


def send_tasks(settings: Settings, name: str, kwargs_list: Sequence[dict[str, Any]]) -> int:
    """Enqueue ``name`` once per kwargs dict. Results are not kept: the database is the truth."""
    import kombu.exceptions
    import redis.exceptions

    from scheduler.celery_app import create_app
    from scheduler.cluster import broker_error

    app = create_app(settings)
    try:
        with app.producer_or_acquire() as producer:
            for kwargs in kwargs_list:
                app.send_task(
                    name, kwargs=kwargs, producer=producer, ignore_result=True, **ROUTES[name]
                )
    except (kombu.exceptions.OperationalError, redis.exceptions.RedisError) as exc:
        raise broker_error(settings, exc) from exc  # a refusal (out of memory) included
    return len(kwargs_list)


def wait_for_batch(
    settings: Settings, batch_id: int, on_progress: Progress, notify: Notify | None = None
) -> BatchCounts:
    """Follow a batch in the database until every job has finished.

    Says so (through ``notify``) when nothing moves and no live worker consumes the cpu
    queue, and rides out a database outage instead of dying on it.
    """
    from scheduler.follow import DatabasePoll, WorkerWatch

    notify = notify or log.warning
    hint = f"Batch #{batch_id} is saved: Ctrl-C is safe; `genrectl jobs show {batch_id}`."
    watch = WorkerWatch(settings, CPU_QUEUE, notify, hint=hint)
    database = DatabasePoll(notify)
    while True:
        counts = database.read(lambda: _count(settings, batch_id))
        if counts is not None:
            on_progress(counts)
            if counts.complete:
                return counts
            watch.observe(counts.finished)
        time.sleep(POLL_S)


def _count(settings: Settings, batch_id: int) -> BatchCounts:
    with session_scope(settings) as session:
        return count_jobs(session, batch_id)


def _run_embedded(
    settings: Settings, batch_id: int, chunks: list[list[int]], on_progress: Progress
) -> None:
    crashed = _run_pool(settings, batch_id, chunks, on_progress)
    if crashed:
        # A decoder crashed a worker process (it happens with some corrupt files). Retry the
        # unfinished tracks one per task so that only the culprit fails.
        log.warning("a worker process died; retrying %d tracks one at a time", len(crashed))
        again = _run_pool(settings, batch_id, [[t] for t in crashed], on_progress)
        _fail_jobs(settings, batch_id, again, "the decoder crashed on this file")


def _run_pool(
    settings: Settings, batch_id: int, chunks: list[list[int]], on_progress: Progress
) -> list[int]:
    """Run chunks in a process pool; return the track ids left queued if the pool broke."""
    if not chunks:
        return []
    context = multiprocessing.get_context("spawn")
    workers = max(1, min(settings.workers, len(chunks)))
    broken = False
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_process, initargs=(settings,)
    ) as pool:
        futures: dict[Future[Any], list[int]] = {
            pool.submit(
                _call, FEATURIZE_CHUNK, settings, {"batch_id": batch_id, "track_ids": chunk}
            ): chunk
            for chunk in chunks
        }
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            for future in finished:
                broken |= _settle(settings, batch_id, future, futures[future])
            with session_scope(settings) as session:
                on_progress(count_jobs(session, batch_id))
    if not broken:
        return []
    return _still_queued(settings, batch_id, [t for c in chunks for t in c])


def _settle(settings: Settings, batch_id: int, future: Future[Any], chunk: list[int]) -> bool:
    """Look at a finished chunk. True if its process died; a raised error fails the chunk."""
    try:
        future.result()
    except BrokenProcessPool:
        return True
    except Exception as exc:  # a bug or a database outage: fail the chunk, keep the batch
        log.exception("chunk of batch %d failed", batch_id)
        _fail_jobs(settings, batch_id, chunk, f"internal error: {type(exc).__name__}: {exc}")
    return False


def _still_queued(settings: Settings, batch_id: int, track_ids: list[int]) -> list[int]:
    with session_scope(settings) as session:
        return queued_track_ids(session, batch_id, track_ids)


def _fail_jobs(settings: Settings, batch_id: int, track_ids: list[int], reason: str) -> None:
    if track_ids:
        with session_scope(settings) as session:
            fail_queued_jobs(session, batch_id, track_ids, reason)
