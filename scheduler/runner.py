"""Run a batch's chunks: in local processes (embedded mode) or on Celery workers.

Either way progress is read from the database, so the same progress bar follows both.
"""

from __future__ import annotations

import logging
import multiprocessing
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
from scheduler.pool import call_task, init_process, stop_workers
from scheduler.tasknames import CPU_QUEUE, FEATURIZE_CHUNK, GPU_QUEUE, ROUTES

log = logging.getLogger(__name__)
Progress = Callable[[BatchCounts], None]
Notify = Callable[[str], None]  # a one-line message for the user
POLL_S = 0.5


def run_featurize(
    settings: Settings,
    batch_id: int,
    chunks: Sequence[list[int]],
    on_progress: Progress,
    notify: Notify | None = None,
) -> BatchCounts:
    """Run the batch's pipeline (featurize ``chunks``, label what the batch's model should
    label) and return the final counts. Distributed mode only enqueues the chunks and the
    labelling ready now, then follows the batch: the workers send the rest."""
    from scheduler import pipeline

    if settings.embedded:
        _run_embedded(settings, batch_id, list(chunks), on_progress)
        pipeline.finish_here(settings, batch_id, on_progress)
    else:
        enqueue_featurize(settings, batch_id, chunks)
        with session_scope(settings) as session:
            ready = pipeline.label_calls(session, batch_id)
        pipeline.send(settings, ready)
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

    Says so (through ``notify``) when nothing moves and no live worker consumes the queue
    of the stage that waits (cpu, then gpu), and rides out a database outage instead of
    dying on it.
    """
    from scheduler.follow import DatabasePoll, WorkerWatch

    notify = notify or log.warning
    hint = f"Batch #{batch_id} is saved: Ctrl-C is safe; `genrectl jobs show {batch_id}`."
    featurizing = WorkerWatch(settings, CPU_QUEUE, notify, hint=hint)
    labelling = WorkerWatch(settings, GPU_QUEUE, notify, hint=hint)
    database = DatabasePoll(notify)
    told: str | None = None
    while True:
        counts = database.read(lambda: _count(settings, batch_id))
        if counts is not None:
            on_progress(counts)
            if counts.complete:
                return counts
            if counts.featurized:
                labelling.observe(counts.label.finished)
            else:
                featurizing.observe(counts.finished)
            reason = database.read(lambda: _waiting_because(settings, batch_id))
            if reason and reason != told:  # a fault the workers met and retry (worker.tasks)
                told = reason
                notify(f"workers wait to retry batch #{batch_id}'s tracks: {reason}")
        time.sleep(POLL_S)


def _waiting_because(settings: Settings, batch_id: int) -> str | None:
    from sqlalchemy import select

    from db.models import Job, JobStatus

    with session_scope(settings) as session:
        return session.scalar(
            select(Job.error)
            .where(
                Job.batch_id == batch_id,
                Job.status == JobStatus.QUEUED,
                Job.error.is_not(None),
            )
            .limit(1)
        )


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
    """Run chunks in a process pool; return the track ids left queued if the pool broke.

    A fault of the machine in any chunk (no space left, the database read-only...) stops
    the whole pool and is raised: the tracks it did not finish stay queued, none is failed
    for it. Ctrl-C or SIGTERM stop it the same way.
    """
    if not chunks:
        return []
    context = multiprocessing.get_context("spawn")
    workers = max(1, min(settings.workers, len(chunks)))
    broken = False
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=init_process, initargs=(settings,)
    )
    try:
        futures: dict[Future[Any], list[int]] = {
            pool.submit(
                call_task, FEATURIZE_CHUNK, settings, {"batch_id": batch_id, "track_ids": chunk}
            ): chunk
            for chunk in chunks
        }
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            for future in finished:
                broken |= _settle(future)
            with session_scope(settings) as session:
                on_progress(count_jobs(session, batch_id))
    except BaseException:
        stop_workers(pool)
        raise
    pool.shutdown(wait=True)
    if not broken:
        return []
    return _still_queued(settings, batch_id, [t for c in chunks for t in c])


def _settle(future: Future[Any]) -> bool:
    """Look at a finished chunk: True if its process died. A fault it met (an
    EnvironmentFault) or an interrupt is raised here and stops the run."""
    try:
        future.result()
    except BrokenProcessPool:
        return True
    return False


def _still_queued(settings: Settings, batch_id: int, track_ids: list[int]) -> list[int]:
    with session_scope(settings) as session:
        return queued_track_ids(session, batch_id, track_ids)


def _fail_jobs(settings: Settings, batch_id: int, track_ids: list[int], reason: str) -> None:
    if track_ids:
        with session_scope(settings) as session:
            fail_queued_jobs(session, batch_id, track_ids, reason)
