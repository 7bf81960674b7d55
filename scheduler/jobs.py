"""Batches as the operator sees them: list, show, retry the failed items, cancel.

Everything here reads and writes the database only; enqueueing is left to the caller, after
the transaction has committed (``genrectl jobs`` in cli/jobs.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import Batch, BatchStatus, Job, JobStatus, Track, TrackStatus, utcnow
from genrectl.errors import NotFoundError
from scheduler.batches import refresh_batch

FINISHED = (BatchStatus.DONE, BatchStatus.CANCELLED, BatchStatus.INTERRUPTED)


def get_batch(session: Session, batch_id: int) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise NotFoundError(f"no batch #{batch_id}: run `genrectl jobs list`")
    return batch


def _job_counts(session: Session, batch_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    rows = session.execute(
        select(Job.batch_id, Job.status, func.count())
        .where(Job.batch_id.in_(list(batch_ids)))
        .group_by(Job.batch_id, Job.status)
    )
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for batch_id, status, n in rows:
        counts[batch_id][str(status)] = n
    return counts


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def _summary(batch: Batch, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": batch.id,
        "kind": batch.kind,
        "status": batch.status,
        "roots": batch.roots,
        "total": sum(counts.values()),
        **{str(s): counts.get(s, 0) for s in JobStatus},
        "unchanged": batch.unchanged,
        "missing": batch.missing,
        "stop_reason": batch.stop_reason,
        "created_at": _when(batch.created_at),
        "finished_at": _when(batch.finished_at),
    }


def list_batches(
    session: Session, *, limit: int = 20, status: str | None = None
) -> list[dict[str, Any]]:
    """The newest batches first, their counters counted from their jobs."""
    query = select(Batch).order_by(Batch.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Batch.status == status)
    batches = list(session.scalars(query))
    counts = _job_counts(session, [b.id for b in batches])
    return [_summary(b, counts.get(b.id, {})) for b in batches]


def show_batch(session: Session, batch_id: int, *, limit: int = 100) -> dict[str, Any]:
    """A batch's summary, its failed items with their reasons, and its unfinished items."""
    batch = get_batch(session, batch_id)
    report = _summary(batch, _job_counts(session, [batch_id]).get(batch_id, {}))
    rows = session.execute(
        select(Job.track_id, Track.path, Job.status, Job.error, Job.attempts)
        .join(Track, Track.id == Job.track_id)
        .where(Job.batch_id == batch_id, Job.status.in_([JobStatus.FAILED, JobStatus.QUEUED]))
        .order_by(Track.path)
    ).all()
    items = [
        {"track_id": tid, "path": path, "reason": error, "attempts": attempts}
        for tid, path, status, error, attempts in rows
        if status == JobStatus.FAILED
    ]
    report["failed_items"] = items[:limit]
    report["queued_items"] = [  # reason: why it waits, when a worker noted one
        {"track_id": tid, "path": path, "attempts": attempts, "reason": error}
        for tid, path, status, error, attempts in rows
        if status == JobStatus.QUEUED
    ][:limit]
    return report


def reopen_failed(session: Session, batch_id: int, *, owner: str | None = None) -> list[int]:
    """Queue the batch's failed items again (only those); returns their track ids.
    ``owner``: the embedded process that runs them now (scheduler.liveness)."""
    batch = get_batch(session, batch_id)
    track_ids = sorted(
        session.scalars(
            select(Job.track_id).where(Job.batch_id == batch_id, Job.status == JobStatus.FAILED)
        )
    )
    if not track_ids:
        return []
    session.execute(
        update(Job)
        .where(Job.batch_id == batch_id, Job.status == JobStatus.FAILED)
        .values(status=JobStatus.QUEUED, error=None, finished_at=None)
    )
    session.execute(
        update(Track)
        .where(Track.id.in_(track_ids), Track.status == TrackStatus.FAILED)
        .values(status=TrackStatus.PENDING, error=None)
    )
    batch.status, batch.finished_at = BatchStatus.RUNNING, None
    batch.owner, batch.stop_reason = owner, None
    refresh_batch(session, batch_id)
    return track_ids


def cancel_queued(session: Session, batch_id: int) -> int:
    """Mark the batch's queued items cancelled and the batch cancelled; returns how many.

    A worker that later receives one of its messages finds nothing queued and does nothing;
    a chunk already running records none of the cancelled items.
    """
    batch = get_batch(session, batch_id)
    result = session.execute(
        update(Job)
        .where(Job.batch_id == batch_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, error="cancelled", finished_at=utcnow())
    )
    cancelled = int(getattr(result, "rowcount", 0) or 0)
    if batch.status == BatchStatus.RUNNING:
        batch.status, batch.finished_at = BatchStatus.CANCELLED, utcnow()
    refresh_batch(session, batch_id)
    return cancelled
