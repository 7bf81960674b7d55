"""Batches as the operator sees them: list, show, retry the failed items, cancel.

Everything here reads and writes the database only; enqueueing is left to the caller, after
the transaction has committed (``genrectl jobs`` in cli/jobs.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from db.models import Batch, BatchStatus, Job, JobKind, JobStatus, Track, TrackStatus, utcnow
from genrectl.errors import NotFoundError
from scheduler.batches import count_jobs, move_jobs, refresh_batch
from scheduler.pipeline import stage_of

FINISHED = (BatchStatus.DONE, BatchStatus.CANCELLED, BatchStatus.INTERRUPTED)


def get_batch(session: Session, batch_id: int) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise NotFoundError(f"no batch #{batch_id}: run `genrectl jobs list`")
    return batch


def _job_counts(session: Session, batch_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per batch, its tracks by stage (``stage_of`` their featurize and label jobs)."""
    per_track = (
        select(
            Job.batch_id,
            func.max(case((Job.kind == JobKind.FEATURIZE, Job.status))).label("featurize"),
            func.max(case((Job.kind == JobKind.LABEL, Job.status))).label("label"),
        )
        .where(Job.batch_id.in_(list(batch_ids)))
        .group_by(Job.batch_id, Job.track_id)
        .subquery()
    )
    rows = session.execute(
        select(
            per_track.c.batch_id, per_track.c.featurize, per_track.c.label, func.count()
        ).group_by(per_track.c.batch_id, per_track.c.featurize, per_track.c.label)
    )
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for batch_id, featurize, label, n in rows:
        counts[batch_id][stage_of(featurize, label)] += n
    return counts


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def _summary(batch: Batch, stages: dict[str, int]) -> dict[str, Any]:
    """A batch's items (tracks) by where they are: ``queued`` is featurizing + labelling."""
    return {
        "id": batch.id,
        "kind": batch.kind,
        "status": batch.status,
        "roots": batch.roots,
        "total": sum(stages.values()),
        "done": stages.get("done", 0),
        "failed": stages.get("failed", 0),
        "cancelled": stages.get("cancelled", 0),
        "queued": stages.get("featurizing", 0) + stages.get("labelling", 0),
        "featurizing": stages.get("featurizing", 0),
        "labelling": stages.get("labelling", 0),
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
    """A batch's summary and stage counts, its failed items with their reasons and stage,
    and its unfinished items with the stage they wait in."""
    batch = get_batch(session, batch_id)
    report = _summary(batch, _job_counts(session, [batch_id]).get(batch_id, {}))
    report["stages"] = count_jobs(session, batch_id).stages()
    report["model"] = batch.model_id
    jobs: dict[int, dict[str, Job]] = defaultdict(dict)
    paths: dict[int, str] = {}
    for job, path in session.execute(
        select(Job, Track.path)
        .join(Track, Track.id == Job.track_id)
        .where(Job.batch_id == batch_id, Job.status.in_([JobStatus.FAILED, JobStatus.QUEUED]))
    ):
        jobs[job.track_id][job.kind] = job
        paths[job.track_id] = path
    failed, queued = [], []
    for track_id in sorted(jobs, key=paths.__getitem__):
        kinds = jobs[track_id]
        item: dict[str, Any] = {"track_id": track_id, "path": paths[track_id]}
        bad = [kinds[k] for k in (JobKind.FEATURIZE, JobKind.LABEL) if k in kinds]
        if any(j.status == JobStatus.FAILED for j in bad):
            job = next(j for j in bad if j.status == JobStatus.FAILED)
            failed.append(
                {**item, "stage": job.kind, "reason": job.error, "attempts": job.attempts}
            )
        else:
            job = bad[0]  # the earliest stage still queued
            stage = "featurizing" if job.kind == JobKind.FEATURIZE else "labelling"
            # reason: why it waits, when a worker noted one
            queued.append({**item, "stage": stage, "attempts": job.attempts, "reason": job.error})
    report["failed_items"], report["queued_items"] = failed[:limit], queued[:limit]
    return report


def reopen_failed(session: Session, batch_id: int, *, owner: str | None = None) -> list[int]:
    """Queue the batch's failed items again (only those): their failed jobs, and the label
    jobs cancelled because their featurizing failed. Returns their track ids. ``owner``:
    the embedded process that runs them now (scheduler.liveness)."""
    batch = get_batch(session, batch_id)
    failed = select(Job.track_id).where(Job.batch_id == batch_id, Job.status == JobStatus.FAILED)
    track_ids = sorted(set(session.scalars(failed)))
    if not track_ids:
        return []
    move_jobs(session, batch_id, None, None, source=JobStatus.FAILED, to=JobStatus.QUEUED)
    cancelled = JobStatus.CANCELLED  # their featurizing failed: labelled after the retry
    move_jobs(session, batch_id, JobKind.LABEL, track_ids, source=cancelled, to=JobStatus.QUEUED)
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
    """Mark the batch's queued jobs cancelled and the batch cancelled; returns how many
    tracks (items) that stopped.

    A worker that later receives one of its messages finds nothing queued and does nothing;
    a chunk already running records none of the cancelled items.
    """
    batch = get_batch(session, batch_id)
    tracks = select(Job.track_id).where(Job.batch_id == batch_id, Job.status == JobStatus.QUEUED)
    cancelled = len(set(session.scalars(tracks)))
    move_jobs(session, batch_id, None, None, to=JobStatus.CANCELLED, error="cancelled")
    if batch.status == BatchStatus.RUNNING:
        batch.status, batch.finished_at = BatchStatus.CANCELLED, utcnow()
    refresh_batch(session, batch_id)
    return cancelled
