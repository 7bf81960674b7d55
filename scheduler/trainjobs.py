"""Training jobs on the cluster: rows a gpu worker takes, beats its heart into and finishes.

A training run can take hours, so unlike a featurize chunk it must never run twice at once:
a worker takes the job under a row lock, and a second delivery of its message (a duplicate
from reconcile, or Redis giving back a message after its visibility timeout) leaves it
alone while its heart beats. When the worker dies (kill -9, a lost node) the heart stops;
``genrectl reconcile`` (and the cluster's periodic reconcile) sends the job again, and the
worker that takes it over resumes from the last checkpoint (training checkpoints every
epoch; worker.training.loop).
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import TrainJob, TrainStatus, utcnow
from genrectl.errors import ConfigError, NotFoundError

HEARTBEAT_S = 10.0
# A heart silent this long has stopped: its job may be taken over.
STALE_S = 6 * HEARTBEAT_S


def worker_id() -> str:
    """This process, as a job's holder: ``host/pid``."""
    return f"{socket.gethostname()}/{os.getpid()}"


def _alive_here(holder: str | None) -> bool:
    """False when ``holder`` is a process of this host that no longer exists."""
    host, _, pid = (holder or "").rpartition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another host's process: only its heartbeat can tell
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False  # no such process
    return state not in ("Z", "X")  # a zombie is dead, only not reaped yet


def is_stale(job: TrainJob, now: datetime | None = None) -> bool:
    """A running job whose holder stopped beating (or died on this very host)."""
    if job.status != TrainStatus.RUNNING:
        return False
    beat = job.heartbeat_at or job.started_at
    now = now or utcnow()
    return (
        beat is None
        or _aware(beat) < now - timedelta(seconds=STALE_S)
        or not _alive_here(job.worker)
    )


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def create_train_job(session: Session, spec: dict[str, Any]) -> TrainJob:
    """A queued job for ``spec`` (commit, then send its message)."""
    name = str(spec["name"])
    existing = session.scalar(select(TrainJob).where(TrainJob.name == name))
    if existing is not None and existing.status != TrainStatus.FAILED:
        raise ConfigError(
            f"a training job named {name!r} exists ({existing.status}): choose another --name"
        )
    if existing is not None:  # a failed job's name is free again; its checkpoints resume
        session.delete(existing)
        session.flush()
    job = TrainJob(name=name, spec=spec)
    session.add(job)
    session.flush()
    return job


def take(session: Session, job_id: int, holder: str) -> dict[str, Any] | None:
    """Take the job for ``holder`` and return its spec; None when there is nothing to do:
    it is finished, or another live worker holds it."""
    job = session.scalar(select(TrainJob).where(TrainJob.id == job_id).with_for_update())
    if job is None:
        raise NotFoundError(f"no training job #{job_id}")
    if job.status in (TrainStatus.DONE, TrainStatus.FAILED):
        return None
    if job.status == TrainStatus.RUNNING and not is_stale(job) and job.worker != holder:
        return None
    now = utcnow()
    job.status, job.worker, job.heartbeat_at = TrainStatus.RUNNING, holder, now
    job.started_at = job.started_at or now
    job.attempts += 1
    return dict(job.spec)


def beat(session: Session, job_id: int, holder: str, progress: dict[str, Any] | None) -> bool:
    """Record a heartbeat (and progress); False if the job is no longer this holder's."""
    job = session.get(TrainJob, job_id, with_for_update=True)
    if job is None or job.worker != holder or job.status != TrainStatus.RUNNING:
        return False
    job.heartbeat_at = utcnow()
    if progress is not None:
        job.progress = {**(job.progress or {}), **progress}
    return True


def release(session: Session, job_id: int, holder: str) -> None:
    """Give the job back (queued) after a transient error: reconcile sends it again."""
    job = session.get(TrainJob, job_id, with_for_update=True)
    if job is not None and job.worker == holder and job.status == TrainStatus.RUNNING:
        job.status, job.worker = TrainStatus.QUEUED, None


def finish(session: Session, job_id: int, *, model_id: int | None, error: str | None) -> None:
    job = session.get(TrainJob, job_id, with_for_update=True)
    if job is None:
        return
    job.status = TrainStatus.FAILED if error else TrainStatus.DONE
    job.model_id, job.error, job.finished_at = model_id, error, utcnow()


def lost_train_jobs(session: Session, *, grace_s: float) -> list[int]:
    """Jobs that no worker is doing: queued for longer than ``grace_s``, or running with a
    stopped heart."""
    cutoff = utcnow() - timedelta(seconds=grace_s)
    jobs = session.scalars(
        select(TrainJob)
        .where(TrainJob.status.in_([TrainStatus.QUEUED, TrainStatus.RUNNING]))
        .order_by(TrainJob.id)
    )
    return [
        job.id
        for job in jobs
        if (job.status == TrainStatus.QUEUED and _aware(job.created_at) <= cutoff) or is_stale(job)
    ]


def describe(job: TrainJob) -> dict[str, Any]:
    """A job as ``status`` and ``train`` show it."""
    return {
        "id": job.id,
        "name": job.name,
        "status": job.status,
        "worker": job.worker,
        "attempts": job.attempts,
        "progress": job.progress,
        "model_id": job.model_id,
        "error": job.error,
        "stale": is_stale(job),
        "created_at": job.created_at.isoformat(timespec="seconds"),
    }
