"""The embedded runner's worker processes: spawned, one torch thread each, logging to a
file, stopping cleanly on request, and never outliving the CLI that started them.

How a worker learns that the CLI died (kill -9 included): it watches its parent's
*sentinel*. A spawned child holds the read end of a pipe whose only write end the parent
holds (``multiprocessing.parent_process().sentinel``); the kernel closes that end when the
parent dies, however it dies, and the read end becomes ready. A pipe rather than polling
``getppid()`` (no delay, no pid reuse) or ``PR_SET_PDEATHSIG`` (Linux only, and it fires
when the *thread* that spawned the child ends, which in a ProcessPoolExecutor is not the
main thread). A watcher thread then interrupts the main thread, so the chunk in hand rolls
back and its temporary files are removed, and exits the process for good after a grace
period if the main thread is stuck in native code.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from types import FrameType
from typing import Any

from genrectl.errors import EnvironmentFault
from genrectl.faults import as_fault
from genrectl.settings import Settings

log = logging.getLogger(__name__)
# After the parent died: how long the chunk in hand gets to roll back before the process
# exits anyway.
EXIT_GRACE_S = 3.0
# After the CLI asked its workers to stop (Ctrl-C, a fault): how long they get. One stuck
# in native code (SQLite waiting out a lock) cannot take the interrupt and is killed.
STOP_GRACE_S = 5.0

_stopping = threading.Event()
_idle = threading.Event()  # no task in hand: the process may exit at once
_idle.set()


def init_process(settings: Settings) -> None:
    """Runs first in every worker process: log to a file, stop on SIGINT once, watch the
    parent, one torch thread."""
    log_file = settings.home / "logs" / "worker.log"
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(
            filename=log_file,
            level=logging.INFO,
            format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        )
        # Decoders (libmpg123, ffmpeg) write warnings straight to fd 2; keep them off the
        # user's terminal and in the log instead.
        with log_file.open("ab") as handle:
            os.dup2(handle.fileno(), 2)
    except OSError:
        # No log where it should be (a full or read-only home): a failed initializer would
        # break the pool and look like a decoder crash on every file. Log to stderr.
        logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGINT, _on_sigint)
    threading.Thread(target=_watch_parent, name="parent-watch", daemon=True).start()
    import torch

    torch.set_num_threads(1)


def _on_sigint(_signum: int, _frame: FrameType | None) -> None:
    # Ctrl-C reaches every process of the terminal's group, and the CLI then signals its
    # workers again: only the first one interrupts, so that a second one cannot tear the
    # rollback of the first.
    if not _stopping.is_set():
        _stopping.set()
        raise KeyboardInterrupt


def _watch_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    multiprocessing.connection.wait([parent.sentinel])
    log.warning("the genrectl process that started this worker is gone: stopping")
    if not _idle.is_set():
        # A real signal aimed at the main thread (it also breaks a blocking read): the task in
        # hand rolls back and removes its temporary files, then says so through _idle.
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        _idle.wait(EXIT_GRACE_S)
    # Not sys.exit: the executor's loop would wait for work that will never come.
    os._exit(1)


def call_task(name: str, settings: Settings, kwargs: dict[str, Any]) -> Any:
    """Run a task function; anything it raises comes back as an EnvironmentFault, which
    crosses the process boundary whole (a KeyboardInterrupt stays one)."""
    if _stopping.is_set():
        raise KeyboardInterrupt  # asked to stop: start nothing new
    _idle.clear()
    try:
        from scheduler.pipeline import TaskCall, run_here

        return run_here(settings, TaskCall(name, kwargs))  # and what follows it: labelling
    except EnvironmentFault:
        raise
    except Exception as exc:
        log.exception("%s failed", name)
        raise as_fault(exc, settings) from None
    finally:
        _idle.set()


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started, interrupt what runs (it rolls back), and wait for the
    workers to exit; kill those that do not within STOP_GRACE_S."""
    # The executor keeps no public list of its processes; _processes (pid -> Process) has
    # been there since Python 3.2.
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(process.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.info("worker %d did not stop in %g s: killed", process.pid, STOP_GRACE_S)
            process.kill()
            process.join(5)
