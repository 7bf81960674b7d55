"""Batch orchestration: turn a scan into a committed batch of jobs, and count its progress.

Counters are always derived from the jobs table, so they are right whatever order workers
finish in, and however often a message is delivered.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import Batch, BatchStatus, Job, JobStatus, Segment, Track, TrackStatus, utcnow
from db.upsert import insert_ignore
from scheduler.scan import FileStat, ScanResult


@dataclass
class IngestPlan:
    batch_id: int
    track_ids: list[int]
    new: int = 0
    changed: int = 0
    features: int = 0  # unchanged files that lack a feature set the batch computes
    unchanged: int = 0
    previously_failed: int = 0
    missing: list[str] = field(default_factory=list)


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def plan_ingest(
    session: Session,
    scan: ScanResult,
    *,
    roots: Sequence[str],
    feature_sets: Mapping[str, dict[str, Any]],
    retry_failed: bool = False,
    owner: str | None = None,
) -> IngestPlan:
    """Insert/refresh track rows for the scanned files, mark vanished ones missing, and
    commit a batch with one queued job per track that needs featurizing: new and changed
    files (pending ones included: left by a run that stopped), and unchanged ones that lack
    one of ``feature_sets`` (feature version → its parameters as a dict: what the promoted
    model needs). ``owner``: the embedded run's lock (scheduler.liveness)."""
    scanned = {f.path: f for f in scan.files}
    insert_ignore(
        session,
        Track,
        [{"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns} for f in scan.files],
        index_elements=["path"],
    )
    plan = IngestPlan(batch_id=0, track_ids=[])
    # One pass over the table rather than an IN list: a library can hold more paths than a
    # statement can bind parameters.
    existing = [t for t in session.scalars(select(Track)) if t.path in scanned]
    held = _held_versions(session)
    to_featurize: list[Track] = []
    for track in existing:
        has_all = set(feature_sets) <= held.get(track.id, set())
        verdict = _verdict(track, scanned[track.path], has_all, retry_failed)
        if verdict == "unchanged":
            plan.unchanged += 1
        elif verdict == "failed":
            plan.previously_failed += 1
        else:
            setattr(plan, verdict, getattr(plan, verdict) + 1)
            to_featurize.append(track)
    plan.missing = _mark_missing(session, roots, scanned)
    batch = Batch(
        roots=list(roots),
        total=len(to_featurize),
        unchanged=plan.unchanged + plan.previously_failed,
        missing=len(plan.missing),
        feature_sets=list(feature_sets.values()),
        owner=owner,
    )
    session.add(batch)
    session.flush()
    insert_ignore(
        session,
        Job,
        [{"batch_id": batch.id, "kind": "featurize", "track_id": t.id} for t in to_featurize],
        index_elements=["batch_id", "kind", "track_id"],
    )
    if not to_featurize:
        batch.status, batch.finished_at = BatchStatus.DONE, utcnow()
    plan.batch_id = batch.id
    plan.track_ids = [t.id for t in to_featurize]
    return plan


def _held_versions(session: Session) -> dict[int, set[str]]:
    """The feature versions each track holds rows of."""
    held: dict[int, set[str]] = {}
    rows = session.execute(select(Segment.track_id, Segment.feature_version).distinct())
    for track_id, version in rows:
        held.setdefault(track_id, set()).add(version)
    return held


def _verdict(track: Track, stat: FileStat, has_all: bool, retry_failed: bool) -> str:
    same_file = track.size == stat.size and track.mtime_ns == stat.mtime_ns
    if same_file and track.status == TrackStatus.OK:
        # Its labels stay while the missing features are computed.
        return "unchanged" if has_all else "features"
    if same_file and track.status == TrackStatus.FAILED and not retry_failed:
        return "failed"
    is_new = track.content_hash is None and track.status == TrackStatus.PENDING
    track.size, track.mtime_ns = stat.size, stat.mtime_ns
    track.status, track.error = TrackStatus.PENDING, None
    return "new" if is_new else "changed"


def _mark_missing(
    session: Session, roots: Sequence[str], scanned: dict[str, FileStat]
) -> list[str]:
    missing = []
    rows = session.execute(select(Track.id, Track.path).where(Track.status != TrackStatus.MISSING))
    gone = [(tid, path) for tid, path in rows if _under(path, roots) and path not in scanned]
    for tid, path in gone:
        session.execute(
            update(Track)
            .where(Track.id == tid)
            .values(status=TrackStatus.MISSING, error="file not found at last ingest")
        )
        missing.append(path)
    return missing


def chunked(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


@dataclass(frozen=True)
class BatchCounts:
    total: int
    done: int
    failed: int
    cancelled: int

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def complete(self) -> bool:
        return self.finished >= self.total


def count_jobs(session: Session, batch_id: int) -> BatchCounts:
    rows = dict(
        session.execute(
            select(Job.status, func.count()).where(Job.batch_id == batch_id).group_by(Job.status)
        ).all()
    )
    return BatchCounts(
        total=sum(rows.values()),
        done=rows.get(JobStatus.DONE, 0),
        failed=rows.get(JobStatus.FAILED, 0),
        cancelled=rows.get(JobStatus.CANCELLED, 0),
    )


def queued_track_ids(
    session: Session, batch_id: int, track_ids: Sequence[int] | None = None
) -> list[int]:
    """Tracks of the batch whose featurize job is still queued (of ``track_ids``, if given)."""
    query = select(Job.track_id).where(
        Job.batch_id == batch_id, Job.kind == "featurize", Job.status == JobStatus.QUEUED
    )
    if track_ids is not None:
        query = query.where(Job.track_id.in_(list(track_ids)))
    return sorted(session.scalars(query))


def fail_queued_jobs(
    session: Session, batch_id: int, track_ids: Sequence[int], reason: str
) -> list[int]:
    """Mark still-queued jobs (and their tracks) failed with a one-line reason."""
    reason = reason.splitlines()[0][:300] if reason else "unknown error"
    ids = queued_track_ids(session, batch_id, track_ids) if track_ids else []
    if ids:
        session.execute(
            update(Job)
            .where(Job.batch_id == batch_id, Job.track_id.in_(ids), Job.status == JobStatus.QUEUED)
            .values(status=JobStatus.FAILED, error=reason, finished_at=utcnow())
        )
        session.execute(
            update(Track).where(Track.id.in_(ids)).values(status=TrackStatus.FAILED, error=reason)
        )
    refresh_batch(session, batch_id)
    return ids


def note_queued_jobs(
    session: Session, batch_id: int, track_ids: Sequence[int], reason: str
) -> None:
    """Record why still-queued jobs wait (they stay queued: not the files' fault)."""
    session.execute(
        update(Job)
        .where(
            Job.batch_id == batch_id,
            Job.track_id.in_(list(track_ids)),
            Job.status == JobStatus.QUEUED,
        )
        .values(error=reason.splitlines()[0][:300] if reason else None)
    )


def refresh_batch(session: Session, batch_id: int) -> BatchCounts:
    """Recompute a batch's counters from its jobs; close it when every job has finished."""
    counts = count_jobs(session, batch_id)
    batch = session.get(Batch, batch_id)
    if batch is None:
        return counts
    batch.done, batch.failed = counts.done, counts.failed
    if counts.complete and batch.status == BatchStatus.RUNNING:
        batch.status, batch.finished_at = BatchStatus.DONE, utcnow()
    return counts
