"""Run a batch's chunks: in local processes (embedded mode) or on Celery workers.

Either way progress is read from the database, so the same progress bar follows both.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

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
from scheduler.warm import WarmClient, WarmUnavailable, WarmWorkerDied, warm_client

if TYPE_CHECKING:
    from scheduler.pipeline import TaskCall

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
    *,
    warm: bool = False,
) -> BatchCounts:
    """Run the batch's pipeline (featurize ``chunks``, label what the batch's model should
    label) and return the final counts. Distributed mode only enqueues the chunks and the
    labelling ready now, then follows the batch: the workers send the rest. ``warm``:
    embedded mode may hand chunks to the warm worker (scheduler.warm), starting it."""
    from scheduler import pipeline

    if settings.embedded:
        client = warm_client(settings) if warm else None  # scheduler.warm
        _run_embedded(settings, batch_id, list(chunks), on_progress, client)
        pipeline.finish_here(settings, batch_id, on_progress, run=_label_runner(client))
    else:
        enqueue_featurize(settings, batch_id, chunks)
        with session_scope(settings) as session:
            ready = pipeline.label_calls(session, batch_id)
        pipeline.send(settings, ready)
        wait_for_batch(settings, batch_id, on_progress, notify)
    with session_scope(settings) as session:
        return refresh_batch(session, batch_id)


def _label_runner(warm: WarmClient | None) -> Callable[[Settings, TaskCall], Any]:
    """How ``finish_here`` runs a labelling call: in the warm worker when there is one (this
    process then never imports torch), else here."""
    from scheduler.pipeline import run_here

    if warm is None:
        return run_here
    return lambda settings, call: warm.call_or_here("scheduler.pipeline:run_here", settings, call)


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
    settings: Settings,
    batch_id: int,
    chunks: list[list[int]],
    on_progress: Progress,
    warm: WarmClient | None,
) -> None:
    crashed = _run_pool(settings, batch_id, chunks, on_progress, warm)
    if crashed:
        # A decoder crashed a worker process (it happens with some corrupt files). Retry the
        # unfinished tracks one per task, in processes of their own, so that only the
        # culprit fails.
        log.warning("a worker process died; retrying %d tracks one at a time", len(crashed))
        again = _run_pool(settings, batch_id, [[t] for t in crashed], on_progress, None)
        _fail_jobs(settings, batch_id, again, "the decoder crashed on this file")


class _Slots:
    """Where chunks run: the warm worker (when there is one) and spawned pool processes,
    each slot taking the next chunk as it finishes one. Futures of both kinds, so that one
    ``wait`` follows them all."""

    def __init__(self, settings: Settings, workers: int, warm: WarmClient | None) -> None:
        self.settings, self.warm = settings, warm
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_process,
            initargs=(settings,),
        )
        self.warm_thread = ThreadPoolExecutor(1) if warm is not None else None

    def submit(self, on_warm: bool, kwargs: dict[str, Any]) -> Future[Any]:
        if on_warm and self.warm is not None and self.warm_thread is not None:
            return self.warm_thread.submit(
                self.warm.call, "scheduler.pool:call_task", FEATURIZE_CHUNK, self.settings, kwargs
            )
        return self.pool.submit(call_task, FEATURIZE_CHUNK, self.settings, kwargs)

    def stop(self) -> None:
        if self.warm is not None:
            self.warm.cancel()
        stop_workers(self.pool)
        if self.warm_thread is not None:
            self.warm_thread.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self.warm_thread is not None:
            self.warm_thread.shutdown(wait=True)


def _run_pool(
    settings: Settings,
    batch_id: int,
    chunks: list[list[int]],
    on_progress: Progress,
    warm: WarmClient | None = None,
) -> list[int]:
    """Run chunks on ``settings.workers`` slots (one of them the warm worker, if given);
    return the track ids left queued if a worker process died.

    A fault of the machine in any chunk (no space left, the database read-only...) stops
    every slot and is raised: the tracks it did not finish stay queued, none is failed
    for it. Ctrl-C or SIGTERM stop it the same way.
    """
    if not chunks:
        return []
    todo = deque({"batch_id": batch_id, "track_ids": chunk} for chunk in chunks)
    workers = max(1, min(settings.workers, len(chunks)))
    slots = _Slots(settings, workers, warm)
    broken = False
    try:
        running: dict[Future[Any], tuple[bool, dict[str, Any]]] = {}
        for slot in range(workers):
            kwargs = todo.popleft()
            on_warm = warm is not None and slot == 0
            running[slots.submit(on_warm, kwargs)] = (on_warm, kwargs)
        while running:
            finished, _ = wait(running, timeout=POLL_S, return_when=FIRST_COMPLETED)
            for future in finished:
                on_warm, kwargs = running.pop(future)
                outcome = _settle(future)
                if outcome == _UNAVAILABLE:  # nothing of it ran: a spawned process runs it
                    on_warm = False
                    todo.appendleft(kwargs)
                if outcome == _CRASHED:  # the rest of the batch in spawned processes
                    broken, on_warm = True, False
                if todo:
                    kwargs = todo.popleft()
                    running[slots.submit(on_warm, kwargs)] = (on_warm, kwargs)
            with session_scope(settings) as session:
                on_progress(count_jobs(session, batch_id))
    except BaseException:
        slots.stop()
        raise
    slots.close()
    if not broken:
        return []
    return _still_queued(settings, batch_id, [t for c in chunks for t in c])


_DONE, _CRASHED, _UNAVAILABLE = "done", "crashed", "unavailable"


def _settle(future: Future[Any]) -> str:
    """Look at a finished chunk: done, crashed (its process died) or unavailable (the warm
    worker could not take it). A fault it met (an EnvironmentFault) or an interrupt is
    raised here and stops the run."""
    try:
        future.result()
    except (BrokenProcessPool, WarmWorkerDied):
        return _CRASHED
    except WarmUnavailable as exc:
        log.info("%s: a spawned worker takes the chunk", exc)
        return _UNAVAILABLE
    return _DONE


def _still_queued(settings: Settings, batch_id: int, track_ids: list[int]) -> list[int]:
    with session_scope(settings) as session:
        return queued_track_ids(session, batch_id, track_ids)


def _fail_jobs(settings: Settings, batch_id: int, track_ids: list[int], reason: str) -> None:
    if track_ids:
        with session_scope(settings) as session:
            fail_queued_jobs(session, batch_id, track_ids, reason)
