"""Featurize a chunk of tracks: decode, segment, mel, one shard, one transaction.

The plain function behind the ``genrectl.featurize_chunk`` task. It is idempotent: a track
whose job is no longer queued is skipped, and a track whose content (sha256) is already
featurized with the current feature version reuses those segments without decoding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.models import Job, JobStatus, Segment, Shard, Track, TrackStatus, utcnow
from genrectl.errors import DecodeError
from genrectl.settings import Settings
from scheduler.batches import fail_queued_jobs, refresh_batch
from worker.audio import AudioInfo, load_segments
from worker.features import FeatureParams, mel_db
from worker.shards import ShardInfo, file_sha256, write_shard
from worker.tags import Tags, read_tags

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What happened to one track; recorded in the database in one transaction per chunk."""

    track_id: int
    status: str  # TrackStatus
    error: str | None = None
    content_hash: str | None = None
    info: AudioInfo | None = None
    tags: Tags = field(default_factory=Tags)
    starts_s: list[float] = field(default_factory=list)
    mel: np.ndarray | None = None  # [n, n_mels, n_frames] float32
    reuse_from: int | None = None  # track id whose segments have the same content


@dataclass(frozen=True)
class ChunkResult:
    done: int
    failed: int
    skipped: int
    shard: str | None


def featurize_chunk(
    settings: Settings, *, batch_id: int, track_ids: list[int], count_attempt: bool = False
) -> ChunkResult:
    """Featurize the still-queued tracks of ``track_ids``. ``count_attempt`` adds one to each
    job's ``attempts`` first (the redelivered path does, one track at a time)."""
    params = FeatureParams()
    with session_scope(settings) as session:
        queued = _queued_tracks(session, batch_id, track_ids, count_attempt=count_attempt)
    outcomes = [_featurize_one(settings, tid, path, params) for tid, path in queued]
    shard = _write(settings, outcomes, params)
    # If this transaction fails the shard file stays behind unreferenced: a failed commit
    # may still have committed, and a referenced shard must never be deleted.
    with session_scope(settings) as session:
        done, failed, shard_used = _record(session, batch_id, outcomes, shard)
        refresh_batch(session, batch_id)
    kept = str(shard.path) if shard is not None and shard_used else None
    if shard is not None and not shard_used:
        shard.path.unlink(missing_ok=True)  # another delivery finished every track meanwhile
    return ChunkResult(done, failed, len(track_ids) - len(queued), kept)


# A file on which a worker process died this many times fails alone (a decoder crash, say).
MAX_ATTEMPTS = 3


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
    settings: Settings, track_id: int, library_path: str, params: FeatureParams
) -> Outcome:
    path = Path(settings.map_path(library_path))
    try:
        content_hash = file_sha256(path)
    except FileNotFoundError:
        return Outcome(track_id, TrackStatus.MISSING, error="file vanished before it was decoded")
    except OSError as exc:
        return Outcome(track_id, TrackStatus.FAILED, error=f"cannot read file: {exc.strerror}")
    reuse = _featurized_twin(settings, content_hash, params.version)
    if reuse is not None:
        return Outcome(
            track_id,
            TrackStatus.OK,
            content_hash=content_hash,
            reuse_from=reuse,
            tags=read_tags(path),
        )
    try:
        decoded = load_segments(
            path,
            params=params,
            max_segments=settings.max_segments,
            min_seconds=settings.min_track_seconds,
        )
    except DecodeError as exc:
        log.info("track %d failed: %s", track_id, exc)
        return Outcome(track_id, TrackStatus.FAILED, error=exc.reason, content_hash=content_hash)
    return Outcome(
        track_id,
        TrackStatus.OK,
        content_hash=content_hash,
        info=decoded.info,
        tags=read_tags(path),
        starts_s=list(decoded.starts_s),
        mel=mel_db(segments=decoded.audio, params=params),
    )


def _featurized_twin(settings: Settings, content_hash: str, version: str) -> int | None:
    """A track with the same bytes already featurized with these parameters, if any."""
    with session_scope(settings) as session:
        return session.scalar(
            select(Track.id)
            .where(
                Track.content_hash == content_hash,
                Track.feature_version == version,
                Track.status == TrackStatus.OK,
                Track.segments.any(),
            )
            .limit(1)
        )


def _write(settings: Settings, outcomes: list[Outcome], params: FeatureParams) -> ShardInfo | None:
    fresh = [o for o in outcomes if o.mel is not None]
    if not fresh:
        return None
    mel = np.concatenate([o.mel for o in fresh if o.mel is not None])
    info = write_shard(
        directory=settings.shard_dir,
        mel=mel,
        track_ids=np.concatenate([np.full(len(o.starts_s), o.track_id, np.int64) for o in fresh]),
        segment_index=np.concatenate([np.arange(len(o.starts_s), dtype=np.int32) for o in fresh]),
        start_s=np.concatenate([np.asarray(o.starts_s, np.float32) for o in fresh]),
        params=params,
    )
    return info


def _record(
    session: Session, batch_id: int, outcomes: list[Outcome], shard: ShardInfo | None
) -> tuple[int, int, bool]:
    """Write every outcome of the chunk, skipping tracks another delivery already finished.

    Returns (done, failed, whether the shard is referenced). The job and track rows are
    locked first, in id order, so two deliveries of the same work (or two batches of the
    same files) record it once, whatever order they finish in.
    """
    still_queued = _lock_queued(session, batch_id, [o.track_id for o in outcomes])
    version = shard.feature_version if shard is not None else None
    for outcome in outcomes:
        if outcome.track_id in still_queued and _featurized_meanwhile(session, outcome, version):
            outcome.reuse_from = outcome.track_id  # keep those segments; rows stay counted
    fresh = [o for o in outcomes if o.track_id in still_queued and o.mel is not None]
    shard_row = _shard_row(session, shard) if any(o.reuse_from is None for o in fresh) else None
    row = 0
    done = failed = 0
    for outcome in outcomes:
        n_rows = len(outcome.starts_s)
        if outcome.track_id in still_queued:
            _record_track(session, outcome, shard_row, row)
            ok = outcome.status == TrackStatus.OK
            _finish_job(session, batch_id, outcome.track_id, ok, outcome.error)
            done, failed = done + ok, failed + (not ok)
        row += n_rows
    return done, failed, shard_row is not None


def _lock_queued(session: Session, batch_id: int, track_ids: list[int]) -> set[int]:
    """Lock the still-queued jobs among ``track_ids`` and their tracks; return those ids."""
    queued = list(
        session.scalars(
            select(Job.track_id)
            .where(
                Job.batch_id == batch_id,
                Job.kind == "featurize",
                Job.status == JobStatus.QUEUED,
                Job.track_id.in_(track_ids),
            )
            .order_by(Job.track_id)
            .with_for_update()
        )
    )
    if queued:
        session.scalars(
            select(Track).where(Track.id.in_(queued)).order_by(Track.id).with_for_update()
        ).all()
    return set(queued)


def _featurized_meanwhile(session: Session, outcome: Outcome, version: str | None) -> bool:
    """The track already holds segments of these very bytes (another batch's delivery)."""
    if outcome.mel is None or version is None:
        return False
    track = session.get(Track, outcome.track_id)
    return (
        track is not None
        and track.status == TrackStatus.OK
        and track.content_hash == outcome.content_hash
        and track.feature_version == version
        and bool(track.segments)
    )


def _shard_row(session: Session, shard: ShardInfo | None) -> Shard:
    assert shard is not None
    row = Shard(
        path=str(shard.path),
        sha256=shard.sha256,
        feature_version=shard.feature_version,
        n_segments=shard.n_segments,
    )
    session.add(row)
    session.flush()
    return row


def _record_track(
    session: Session, outcome: Outcome, shard_row: Shard | None, first_row: int
) -> None:
    track = session.get(Track, outcome.track_id)
    if track is None:  # deleted meanwhile: nothing to record
        return
    track.status, track.error = outcome.status, outcome.error
    track.content_hash = outcome.content_hash or track.content_hash
    tags = outcome.tags
    track.artist, track.title, track.album, track.genre_tag = (
        tags.artist,
        tags.title,
        tags.album,
        tags.genre,
    )
    if outcome.status == TrackStatus.FAILED:  # the file changed and no longer decodes
        session.execute(delete(Segment).where(Segment.track_id == track.id))
    if outcome.status != TrackStatus.OK:
        return
    if outcome.reuse_from is not None:
        if outcome.reuse_from != track.id:
            _copy_segments(session, source_id=outcome.reuse_from, track=track)
        return
    assert shard_row is not None and outcome.info is not None
    session.execute(delete(Segment).where(Segment.track_id == track.id))
    info = outcome.info
    track.feature_version = shard_row.feature_version
    track.duration_s, track.sample_rate, track.channels = (
        info.duration_s,
        info.sample_rate,
        info.channels,
    )
    track.codec = info.codec
    session.add_all(
        Segment(track_id=track.id, shard_id=shard_row.id, row=first_row + i, index=i, start_s=start)
        for i, start in enumerate(outcome.starts_s)
    )


def _copy_segments(session: Session, *, source_id: int, track: Track) -> None:
    source = session.get(Track, source_id)
    assert source is not None
    session.execute(delete(Segment).where(Segment.track_id == track.id))
    for attr in ("feature_version", "duration_s", "sample_rate", "channels", "codec"):
        setattr(track, attr, getattr(source, attr))
    session.add_all(
        Segment(track_id=track.id, shard_id=s.shard_id, row=s.row, index=s.index, start_s=s.start_s)
        for s in source.segments
    )


def _finish_job(
    session: Session, batch_id: int, track_id: int, ok: bool, error: str | None
) -> None:
    job = session.scalar(
        select(Job).where(
            Job.batch_id == batch_id, Job.kind == "featurize", Job.track_id == track_id
        )
    )
    if job is not None:
        job.status = JobStatus.DONE if ok else JobStatus.FAILED
        job.error, job.finished_at = error, utcnow()
