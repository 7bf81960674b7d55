"""Batch orchestration: turn a scan into a committed batch of jobs, and count its progress.

Counters are always derived from the jobs table, so they are right whatever order workers
finish in, and however often a message is delivered.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, Select, func, select, update
from sqlalchemy.orm import Session, aliased

from db.models import (
    Batch,
    BatchStatus,
    Job,
    JobKind,
    JobStatus,
    Prediction,
    Segment,
    Track,
    TrackStatus,
    utcnow,
)
from db.upsert import insert_ignore
from scheduler.scan import FileStat, ScanResult

# A track's id, path, size, mtime_ns, status, error and content hash, as plan_ingest reads them.
TrackStamp = Row[int, str, int, int, str, str | None, str | None]


@dataclass
class IngestPlan:
    batch_id: int
    track_ids: list[int]  # to featurize (then label, when the batch has a model)
    label_only: list[int] = field(default_factory=list)  # featurized, not labelled by the model
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
    model_id: int | None = None,
    retry_failed: bool = False,
    owner: str | None = None,
) -> IngestPlan:
    """Insert/refresh track rows for the scanned files, mark vanished ones missing, and
    commit a batch with one queued featurize job per track that needs featurizing: new and
    changed files (pending ones included: left by a run that stopped), and unchanged ones
    that lack one of ``feature_sets`` (feature version → its parameters as a dict: what the
    promoted model needs). With ``model_id`` (the promoted model, which reads
    ``feature_sets``) every track featurized gets a label job too, and so does every
    unchanged track that model has not labelled. ``owner``: the embedded run's lock
    (scheduler.liveness)."""
    scanned = {f.path: f for f in scan.files}
    known = _known_tracks(session)
    if any(path not in known for path in scanned):
        rows = [{"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns} for f in scan.files]
        insert_ignore(
            session, Track, [r for r in rows if r["path"] not in known], index_elements=["path"]
        )
        known = _known_tracks(session)
    plan = IngestPlan(batch_id=0, track_ids=[])
    lacking = _lacking_features(session, feature_sets)
    labelled = _labelled_by(session, model_id)
    to_featurize: list[int] = []
    refreshed: list[dict[str, Any]] = []
    for track in known.values():
        stat = scanned.get(track.path)
        if stat is None:
            continue
        verdict = _verdict(track, stat, track.id not in lacking, retry_failed)
        if verdict == "unchanged":
            plan.unchanged += 1
            if model_id is not None and track.id not in labelled:
                plan.label_only.append(track.id)
        elif verdict == "failed":
            plan.previously_failed += 1
        else:
            setattr(plan, verdict, getattr(plan, verdict) + 1)
            to_featurize.append(track.id)
            stamp = (track.size, track.mtime_ns, track.status, track.error)
            if verdict != "features" and stamp != (
                stat.size,
                stat.mtime_ns,
                TrackStatus.PENDING,
                None,
            ):
                refreshed.append({"id": track.id, "size": stat.size, "mtime_ns": stat.mtime_ns})
    _set_pending(session, refreshed)
    plan.missing = _mark_missing(session, known.values(), roots, scanned)
    batch = Batch(
        roots=list(roots),
        total=len(to_featurize),
        unchanged=plan.unchanged + plan.previously_failed,
        missing=len(plan.missing),
        feature_sets=list(feature_sets.values()),
        owner=owner,
        model_id=model_id,
    )
    session.add(batch)
    session.flush()
    plan.batch_id = batch.id
    plan.track_ids = to_featurize
    add_jobs(session, batch.id, JobKind.FEATURIZE, plan.track_ids)
    if model_id is not None:
        add_jobs(session, batch.id, JobKind.LABEL, plan.track_ids + plan.label_only)
    if not plan.track_ids and not plan.label_only:
        batch.status, batch.finished_at = BatchStatus.DONE, utcnow()
    return plan


def add_jobs(session: Session, batch_id: int, kind: JobKind, track_ids: Sequence[int]) -> None:
    """Queued jobs of one kind for ``track_ids`` (once each, whoever else adds them)."""
    insert_ignore(
        session,
        Job,
        [{"batch_id": batch_id, "kind": kind, "track_id": t} for t in track_ids],
        index_elements=["batch_id", "kind", "track_id"],
    )


def _known_tracks(session: Session) -> dict[str, TrackStamp]:
    """path -> the track's id, file stamp and status, in id order: one pass over the table
    (an IN list of a library's paths would pass the limit on bound parameters)."""
    rows = session.execute(
        select(
            Track.id, Track.path, Track.size, Track.mtime_ns, Track.status, Track.error,
            Track.content_hash,
        ).order_by(Track.id)
    )  # fmt: skip
    return {row.path: row for row in rows}


def _labelled_by(session: Session, model_id: int | None) -> set[int]:
    if model_id is None:
        return set()
    return set(session.scalars(select(Prediction.track_id).where(Prediction.model_id == model_id)))


def _lacking_features(session: Session, versions: Iterable[str]) -> set[int]:
    """Tracks without rows of one of the feature ``versions``: a probe of the segments'
    unique index per track, rather than every track's versions brought over."""
    lacking: set[int] = set()
    for version in versions:
        held = select(Segment.id).where(
            Segment.track_id == Track.id, Segment.feature_version == version
        )
        lacking.update(session.scalars(select(Track.id).where(~held.exists())))
    return lacking


def _verdict(track: TrackStamp, stat: FileStat, has_all: bool, retry_failed: bool) -> str:
    same_file = track.size == stat.size and track.mtime_ns == stat.mtime_ns
    if same_file and track.status == TrackStatus.OK:
        # Its labels stay while the missing features are computed.
        return "unchanged" if has_all else "features"
    if same_file and track.status == TrackStatus.FAILED and not retry_failed:
        return "failed"
    is_new = track.content_hash is None and track.status == TrackStatus.PENDING
    return "new" if is_new else "changed"


def _set_pending(session: Session, stamps: list[dict[str, Any]]) -> None:
    """Record new file stamps (dicts of id, size, mtime_ns): the tracks wait to be
    featurized again."""
    if stamps:
        pending = {"status": TrackStatus.PENDING, "error": None, "updated_at": utcnow()}
        session.execute(update(Track), [{**s, **pending} for s in stamps])


def _mark_missing(
    session: Session,
    known: Iterable[TrackStamp],
    roots: Sequence[str],
    scanned: dict[str, FileStat],
) -> list[str]:
    gone = [
        t
        for t in known
        if t.status != TrackStatus.MISSING and t.path not in scanned and _under(t.path, roots)
    ]
    if gone:
        missing = {"status": TrackStatus.MISSING, "error": "file not found at last ingest"}
        session.execute(update(Track), [{"id": t.id, **missing} for t in gone])
    return [t.path for t in gone]


def chunked(items: Sequence[int], size: int, *, slots: int = 1) -> Iterator[list[int]]:
    """``items`` in chunks of at most ``size`` and of sizes that differ by one at most;
    more than one chunk, as many as a multiple of ``slots`` (the workers that run them), so
    that the workers finish together: 100 tracks by 16 on 2 workers are 8 chunks of 12 or
    13, not 7 of which one worker runs 4. What fits in one chunk stays one: a second
    worker would spend longer starting than on its share."""
    if not items:
        return
    count = math.ceil(len(items) / size)
    if count > 1:
        count = min(len(items), math.ceil(count / slots) * slots)
    base, extra = divmod(len(items), count)
    start = 0
    for index in range(count):
        end = start + base + (1 if index < extra else 0)
        yield list(items[start:end])
        start = end


@dataclass(frozen=True)
class StageCounts:
    """One stage's jobs of a batch, by status."""

    total: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def queued(self) -> int:
        return self.total - self.finished

    def as_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "queued": self.queued,
        }


@dataclass(frozen=True)
class BatchCounts(StageCounts):
    """A batch's featurize stage (the inherited counters, as before labelling joined the
    pipeline) and its label stage; complete when both have finished."""

    label: StageCounts = field(default_factory=StageCounts)

    @property
    def featurized(self) -> bool:
        return self.finished >= self.total

    @property
    def complete(self) -> bool:
        return self.featurized and self.label.finished >= self.label.total

    def stages(self) -> dict[str, dict[str, int]]:
        return {
            JobKind.FEATURIZE.value: StageCounts.as_dict(self),
            JobKind.LABEL.value: self.label.as_dict(),
        }


def _stage(rows: dict[str, int]) -> StageCounts:
    return StageCounts(
        total=sum(rows.values()),
        done=rows.get(JobStatus.DONE, 0),
        failed=rows.get(JobStatus.FAILED, 0),
        cancelled=rows.get(JobStatus.CANCELLED, 0),
    )


def count_jobs(session: Session, batch_id: int) -> BatchCounts:
    rows: dict[str, dict[str, int]] = {JobKind.FEATURIZE: {}, JobKind.LABEL: {}}
    for kind, status, n in session.execute(
        select(Job.kind, Job.status, func.count())
        .where(Job.batch_id == batch_id)
        .group_by(Job.kind, Job.status)
    ):
        rows.setdefault(kind, {})[status] = n
    f = _stage(rows[JobKind.FEATURIZE])
    return BatchCounts(f.total, f.done, f.failed, f.cancelled, label=_stage(rows[JobKind.LABEL]))


def queued_track_ids(
    session: Session, batch_id: int, track_ids: Sequence[int] | None = None
) -> list[int]:
    """Tracks of the batch whose featurize job is still queued (of ``track_ids``, if given)."""
    query = select(Job.track_id).where(
        Job.batch_id == batch_id, Job.kind == JobKind.FEATURIZE, Job.status == JobStatus.QUEUED
    )
    if track_ids is not None:
        query = query.where(Job.track_id.in_(list(track_ids)))
    return sorted(session.scalars(query))


def move_jobs(
    session: Session,
    batch_id: int,
    kind: JobKind | None,
    track_ids: Sequence[int] | Select[Any] | None,
    *,
    to: JobStatus,
    source: JobStatus = JobStatus.QUEUED,
    error: str | None = None,
) -> int:
    """Move the batch's jobs of ``kind`` (None: any) for ``track_ids`` (None: all) from
    ``source`` to ``to`` with ``error``; returns how many moved."""
    query = update(Job).where(Job.batch_id == batch_id, Job.status == source)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if track_ids is not None:
        query = query.where(
            Job.track_id.in_(track_ids if isinstance(track_ids, Select) else list(track_ids))
        )
    finished = None if to == JobStatus.QUEUED else utcnow()
    result = session.execute(query.values(status=to, error=error, finished_at=finished))
    return int(getattr(result, "rowcount", 0) or 0)


def fail_queued_jobs(
    session: Session, batch_id: int, track_ids: Sequence[int], reason: str
) -> list[int]:
    """Mark still-queued jobs (and their tracks) failed with a one-line reason."""
    reason = reason.splitlines()[0][:300] if reason else "unknown error"
    ids = queued_track_ids(session, batch_id, track_ids) if track_ids else []
    if ids:
        move_jobs(session, batch_id, JobKind.FEATURIZE, ids, to=JobStatus.FAILED, error=reason)
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
            Job.kind == JobKind.FEATURIZE,
            Job.track_id.in_(list(track_ids)),
            Job.status == JobStatus.QUEUED,
        )
        .values(error=reason.splitlines()[0][:300] if reason else None)
    )


def refresh_batch(session: Session, batch_id: int) -> BatchCounts:
    """Recompute a batch's counters from its jobs; close it when every job has finished.

    A track that failed to featurize (or was cancelled) will not be labelled: its label
    job is cancelled here, the one place every featurize outcome passes through."""
    featurize = aliased(Job)
    not_featurized = select(featurize.track_id).where(
        featurize.batch_id == batch_id,
        featurize.kind == JobKind.FEATURIZE,
        featurize.status.in_([JobStatus.FAILED, JobStatus.CANCELLED]),
    )
    move_jobs(
        session,
        batch_id,
        JobKind.LABEL,
        not_featurized,
        to=JobStatus.CANCELLED,
        error="not featurized",
    )
    counts = count_jobs(session, batch_id)
    batch = session.get(Batch, batch_id)
    if batch is None:
        return counts
    batch.done, batch.failed = counts.done, counts.failed
    if counts.complete and batch.status == BatchStatus.RUNNING:
        batch.status, batch.finished_at = BatchStatus.DONE, utcnow()
    return counts
