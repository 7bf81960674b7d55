"""Which embedded runs are still alive, so that a run that died is not "running" forever.

Each embedded run holds an exclusive ``flock`` on a file of its own under
``$GENRECTL_HOME/runs/`` for as long as it lives, and its batch records the owner
(``host:pid:token``). The kernel drops the lock when the process ends, however it ends
(kill -9, a crash, the OOM killer), so a later start that can take the lock knows the owner
is dead, whatever pid has been reused since. A lock, not a pid check, for that reason; and a
run on another host (a shared PostgreSQL) is never judged from here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Batch, BatchStatus, Job, JobStatus, utcnow
from genrectl.settings import Settings
from scheduler.batches import refresh_batch

DIED = (
    "its genrectl process died (killed, crashed, the machine stopped) or could not write "
    "the database to close it"
)


def _lock_dir(settings: Settings) -> Path:
    return settings.home / "runs"


@dataclass
class RunLock:
    """Held by a live run; ``owner`` goes into its batch row."""

    owner: str
    path: Path
    _handle: IO[str] | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self._handle.close()  # closing drops the flock
            self._handle = None


def hold_run_lock(settings: Settings) -> RunLock:
    """Take a lock of this process's own (released by ``release`` or by its death)."""
    token = uuid.uuid4().hex[:12]
    path = _lock_dir(settings) / f"{token}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return RunLock(f"{socket.gethostname()}:{os.getpid()}:{token}", path, handle)


def owner_is_dead(settings: Settings, owner: str) -> bool:
    """True only when ``owner`` ran on this host and its lock is free (or gone)."""
    host, _, rest = owner.partition(":")
    token = rest.rpartition(":")[2]
    if host != socket.gethostname() or not token:
        return False
    path = _lock_dir(settings) / f"{token}.lock"
    try:
        handle = path.open("r")
    except FileNotFoundError:
        return True
    except OSError:
        return False  # cannot tell: assume alive
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        with contextlib.suppress(OSError):
            path.unlink()
        return True


def interrupt_batch(session: Session, batch_id: int, reason: str) -> int:
    """Close a running batch as ``interrupted``: its still-queued jobs are cancelled (an
    error they already carry is kept), its tracks stay as they are (pending ones are taken up
    by the next ingest). Returns how many jobs it had left."""
    batch = session.get(Batch, batch_id)
    if batch is None or batch.status != BatchStatus.RUNNING:
        return 0
    queued = (Job.batch_id == batch_id, Job.status == JobStatus.QUEUED)
    left = len(list(session.scalars(select(Job.id).where(*queued))))
    session.execute(
        update(Job).where(*queued, Job.error.is_(None)).values(error=f"interrupted: {reason}"[:300])
    )
    session.execute(
        update(Job).where(*queued).values(status=JobStatus.CANCELLED, finished_at=utcnow())
    )
    refresh_batch(session, batch_id)
    batch.status, batch.finished_at = BatchStatus.INTERRUPTED, utcnow()
    batch.stop_reason = reason[:1000]
    return left


@dataclass(frozen=True)
class DeadRun:
    batch_id: int
    unfinished: int
    kind: str  # the batch's: ingest | repair

    @property
    def resumed_by(self) -> str:
        """The command that takes its unfinished tracks up."""
        if self.kind == "repair":
            return "`genrectl verify --repair`"
        return "`genrectl ingest` of their folder"


def reap_dead_runs(session: Session, settings: Settings) -> list[DeadRun]:
    """Mark the running batches whose owner died ``interrupted``; what they left."""
    running = session.scalars(
        select(Batch).where(Batch.status == BatchStatus.RUNNING, Batch.owner.is_not(None))
    ).all()
    dead = []
    for batch in running:
        if batch.owner and owner_is_dead(settings, batch.owner):
            left = interrupt_batch(session, batch.id, DIED)
            dead.append(DeadRun(batch.id, left, batch.kind))
    return dead
