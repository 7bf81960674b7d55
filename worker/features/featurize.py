"""Featurize a chunk of tracks: decode once, compute every feature set the batch asks for,
one shard per feature set, one transaction.

The plain function behind the ``genrectl.featurize_chunk`` task. The batch row says which
feature sets to compute (the promoted model's, when the batch was planned). It is
idempotent: a track whose job is no longer queued is skipped, and a feature set a track
already holds for its current bytes (or that a file with the same bytes holds: a copy) is
reused without decoding; only what is missing is computed, from one decode of the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.models import Batch, Job, JobStatus, Segment, Track, TrackStatus
from genrectl.errors import DecodeError, InternalFault
from genrectl.faults import as_fault
from genrectl.files import file_sha256
from genrectl.settings import Settings
from scheduler.batches import fail_queued_jobs, refresh_batch
from worker.audio.tags import read_tags
from worker.features.compute import featurize_file
from worker.features.mel import FeatureParams
from worker.features.record import MAX_ATTEMPTS, Outcome, record_outcomes
from worker.features.sets import FeatureSet, feature_set_from_dict
from worker.features.shards import ShardInfo, write_shard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkResult:
    done: int
    failed: int
    skipped: int
    shard: str | None
    deferred: int = 0  # tracks left queued by an internal error (see _defer)


def batch_feature_sets(session: Session, batch_id: int) -> list[FeatureSet]:
    """The feature sets a batch computes; the reference mel for a batch that names none."""
    batch = session.get(Batch, batch_id)
    described = batch.feature_sets if batch is not None else []
    return [feature_set_from_dict(d) for d in described] or [FeatureParams()]


def featurize_chunk(
    settings: Settings, *, batch_id: int, track_ids: list[int], count_attempt: bool = False
) -> ChunkResult:
    """Featurize the still-queued tracks of ``track_ids``. ``count_attempt`` adds one to each
    job's ``attempts`` first (the redelivered path does, one track at a time)."""
    with session_scope(settings) as session:
        sets = batch_feature_sets(session, batch_id)
        queued = _queued_tracks(session, batch_id, track_ids, count_attempt=count_attempt)
    outcomes = [_featurize_one(settings, tid, path, sets) for tid, path in queued]
    shards = _write(settings, outcomes, sets)
    committing = False
    try:
        with session_scope(settings) as session:
            done, failed, deferred, used = record_outcomes(session, batch_id, outcomes, shards)
            refresh_batch(session, batch_id)
            committing = True  # session_scope commits next
    except BaseException:
        # Stopped (a fault, Ctrl-C) before the commit began: nothing references the new
        # shards. If the commit itself failed they stay: it may have committed after all, a
        # referenced shard must never be deleted, and `genrectl verify --repair` removes
        # unreferenced ones.
        if not committing:
            for shard in shards.values():
                shard.path.unlink(missing_ok=True)
        raise
    for version, shard in shards.items():
        if version not in used:
            shard.path.unlink(missing_ok=True)  # another delivery finished every track meanwhile
    kept = [str(shards[v].path) for v in sorted(used)]
    skipped = len(track_ids) - len(queued)
    return ChunkResult(done, failed, skipped, kept[0] if kept else None, deferred)


def featurize_redelivered(
    settings: Settings, *, batch_id: int, track_ids: list[int]
) -> ChunkResult:
    """``featurize_chunk`` for a message given back by a worker that died on it.

    One track per transaction, so a file that kills the process costs only itself. Each such
    try is counted in ``Job.attempts`` before the file is decoded; a track tried MAX_ATTEMPTS
    times this way fails with a reason instead of being tried again, so one file cannot crash
    workers forever.
    """
    with session_scope(settings) as session:
        worn = _worn_out(session, batch_id, track_ids)
        reason = f"a worker process died on this file {MAX_ATTEMPTS} times (decoder crash?)"
        fail_queued_jobs(session, batch_id, worn, reason)
    done, failed, skipped = 0, len(worn), 0
    for track_id in (t for t in track_ids if t not in worn):
        result = featurize_chunk(
            settings, batch_id=batch_id, track_ids=[track_id], count_attempt=True
        )
        done, failed, skipped = done + result.done, failed + result.failed, skipped + result.skipped
    return ChunkResult(done, failed, skipped, None)


def _worn_out(session: Session, batch_id: int, track_ids: list[int]) -> list[int]:
    query = select(Job.track_id).where(
        Job.batch_id == batch_id,
        Job.kind == "featurize",
        Job.status == JobStatus.QUEUED,
        Job.track_id.in_(track_ids),
        Job.attempts >= MAX_ATTEMPTS,
    )
    return sorted(session.scalars(query))


def _queued_tracks(
    session: Session, batch_id: int, track_ids: list[int], *, count_attempt: bool
) -> list[tuple[int, str]]:
    jobs = session.scalars(
        select(Job).where(
            Job.batch_id == batch_id,
            Job.kind == "featurize",
            Job.track_id.in_(track_ids),
            Job.status == JobStatus.QUEUED,
        )
    ).all()
    # Only tries after a worker died count: a chunk cut short by a broker restart, a retry or
    # a duplicate message from reconcile is not the file's fault.
    for job in jobs if count_attempt else ():
        job.attempts += 1
    ids = [job.track_id for job in jobs]
    rows = session.execute(select(Track.id, Track.path).where(Track.id.in_(ids))).all()
    return sorted((tid, path) for tid, path in rows)


def _featurize_one(
    settings: Settings, track_id: int, library_path: str, sets: list[FeatureSet]
) -> Outcome:
    path = Path(settings.map_path(library_path))
    try:
        content_hash = file_sha256(path)
    except FileNotFoundError:
        return Outcome(track_id, TrackStatus.MISSING, error="file vanished before it was decoded")
    except OSError as exc:
        return Outcome(track_id, TrackStatus.FAILED, error=f"cannot read file: {exc.strerror}")
    reuse = _holders(settings, track_id, content_hash, [s.version for s in sets])
    missing = [s for s in sets if s.version not in reuse]
    outcome = Outcome(
        track_id, TrackStatus.OK, content_hash=content_hash, tags=read_tags(path), reuse=reuse
    )
    if not missing:
        return outcome
    try:
        featurized = featurize_file(
            path,
            sets=missing,
            max_segments=settings.max_segments,
            min_seconds=settings.min_track_seconds,
        )
    except DecodeError as exc:
        log.info("track %d failed: %s", track_id, exc)
        return Outcome(track_id, TrackStatus.FAILED, error=exc.reason, content_hash=content_hash)
    except Exception as exc:
        fault = as_fault(exc, settings, what=f"featurizing '{path}'")
        if not isinstance(fault, InternalFault):
            raise fault from exc  # out of memory, a full disk: stop the run
        # A bug met on this file: not the file's fault, so the track stays pending (see _defer).
        log.exception("internal error on track %d (%s)", track_id, path)
        error = f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
        return Outcome(track_id, TrackStatus.PENDING, error=error, content_hash=content_hash)
    outcome.info, outcome.note, outcome.computed = featurized.info, featurized.note, featurized.rows
    outcome.rhythm = featurized.rhythm
    return outcome


def _holders(
    settings: Settings, track_id: int, content_hash: str, versions: list[str]
) -> dict[str, int]:
    """For each feature version, a track holding its rows for these bytes, if any: the track
    itself first (an unchanged file that lacks only a new model's features), else a copy."""
    with session_scope(settings) as session:
        rows = session.execute(
            select(Segment.feature_version, Track.id)
            .join(Track, Track.id == Segment.track_id)
            .where(
                Track.content_hash == content_hash,
                Track.status == TrackStatus.OK,
                Segment.feature_version.in_(versions),
            )
            .distinct()
        ).all()
    holders: dict[str, int] = {}
    for version, holder in sorted(rows, key=lambda r: (r[1] != track_id, r[1])):
        holders.setdefault(version, holder)
    return holders


def _write(
    settings: Settings, outcomes: list[Outcome], sets: list[FeatureSet]
) -> dict[str, ShardInfo]:
    """One shard per feature set with fresh rows, keyed by feature version."""
    shards = {}
    for feature_set in sets:
        fresh = [
            (o.track_id, o.computed[feature_set.version])
            for o in outcomes
            if feature_set.version in o.computed
        ]
        if not fresh:
            continue
        shards[feature_set.version] = write_shard(
            directory=settings.shard_dir,
            arrays={
                name: np.concatenate([rows.arrays[name] for _, rows in fresh])
                for name in feature_set.shapes
            },
            track_ids=np.concatenate([np.full(len(r.starts_s), tid, np.int64) for tid, r in fresh]),
            segment_index=np.concatenate(
                [np.arange(len(r.starts_s), dtype=np.int32) for _, r in fresh]
            ),
            start_s=np.concatenate([np.asarray(r.starts_s, np.float32) for _, r in fresh]),
            params=feature_set,
        )
    return shards
