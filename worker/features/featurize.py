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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.models import Batch, Job, JobStatus, Segment, Shard, Track, TrackStatus, utcnow
from genrectl.errors import DecodeError
from genrectl.settings import Settings
from scheduler.batches import fail_queued_jobs, refresh_batch
from worker.audio.decode import AudioInfo
from worker.audio.tags import Tags, read_tags
from worker.features.compute import FeatureRows, featurize_file
from worker.features.mel import FeatureParams
from worker.features.sets import FeatureSet, feature_set_from_dict
from worker.features.shards import ShardInfo, file_sha256, write_shard

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What happened to one track; recorded in the database in one transaction per chunk.

    ``computed``: fresh rows by feature version; ``reuse``: feature version → the track whose
    rows of that version hold these very bytes (the track itself when it already has them).
    """

    track_id: int
    status: str  # TrackStatus
    error: str | None = None
    content_hash: str | None = None
    info: AudioInfo | None = None
    tags: Tags = field(default_factory=Tags)
    note: str | None = None
    computed: dict[str, FeatureRows] = field(default_factory=dict)
    reuse: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkResult:
    done: int
    failed: int
    skipped: int
    shard: str | None


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
    # If this transaction fails the shard files stay behind unreferenced: a failed commit
    # may still have committed, and a referenced shard must never be deleted.
    with session_scope(settings) as session:
        done, failed, used = _record(session, batch_id, outcomes, shards)
        refresh_batch(session, batch_id)
    for version, shard in shards.items():
        if version not in used:
            shard.path.unlink(missing_ok=True)  # another delivery finished every track meanwhile
    kept = [str(shards[v].path) for v in sorted(used)]
    return ChunkResult(done, failed, len(track_ids) - len(queued), kept[0] if kept else None)


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
    outcome.info, outcome.note, outcome.computed = featurized.info, featurized.note, featurized.rows
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


def _record(
    session: Session, batch_id: int, outcomes: list[Outcome], shards: dict[str, ShardInfo]
) -> tuple[int, int, set[str]]:
    """Write every outcome of the chunk, skipping tracks another delivery already finished.

    Returns (done, failed, the feature versions whose new shard is referenced). The job and
    track rows are locked first, in id order, so two deliveries of the same work (or two
    batches of the same files) record it once, whatever order they finish in.
    """
    still_queued = _lock_queued(session, batch_id, [o.track_id for o in outcomes])
    shard_rows: dict[str, Shard] = {}
    first_row = {version: 0 for version in shards}
    done = failed = 0
    for outcome in outcomes:
        if outcome.track_id in still_queued:
            for version in _held_meanwhile(session, outcome):
                outcome.reuse[version] = outcome.track_id  # keep those rows; skip the fresh ones
            placed = {}
            for version, rows in outcome.computed.items():
                if version not in outcome.reuse:
                    if version not in shard_rows:
                        shard_rows[version] = _shard_row(session, shards[version])
                    placed[version] = (shard_rows[version], first_row[version], rows)
            _record_track(session, outcome, placed)
            ok = outcome.status == TrackStatus.OK
            _finish_job(session, batch_id, outcome.track_id, ok, outcome.error)
            done, failed = done + ok, failed + (not ok)
        for version, rows in outcome.computed.items():
            first_row[version] += len(rows.starts_s)
    return done, failed, set(shard_rows)


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


def _held_meanwhile(session: Session, outcome: Outcome) -> list[str]:
    """Fresh feature versions the track already holds for these very bytes (another batch's
    delivery recorded them while this one computed)."""
    if not outcome.computed:
        return []
    track = session.get(Track, outcome.track_id)
    if track is None or track.status != TrackStatus.OK:
        return []
    if track.content_hash != outcome.content_hash:
        return []
    held = {s.feature_version for s in track.segments}
    return sorted(v for v in outcome.computed if v in held)


def _shard_row(session: Session, shard: ShardInfo) -> Shard:
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
    session: Session, outcome: Outcome, placed: dict[str, tuple[Shard, int, FeatureRows]]
) -> None:
    track = session.get(Track, outcome.track_id)
    if track is None:  # deleted meanwhile: nothing to record
        return
    changed = track.content_hash is not None and track.content_hash != outcome.content_hash
    if outcome.status != TrackStatus.OK or changed:
        # A file that no longer decodes, or new bytes: none of its old rows describe it.
        session.execute(delete(Segment).where(Segment.track_id == track.id))
    track.status, track.error = outcome.status, outcome.error
    track.content_hash = outcome.content_hash or track.content_hash
    tags = outcome.tags
    track.artist, track.title, track.album, track.genre_tag = (
        tags.artist,
        tags.title,
        tags.album,
        tags.genre,
    )
    if outcome.status != TrackStatus.OK:
        return
    for version, source_id in outcome.reuse.items():
        if source_id != track.id:
            _copy_segments(session, source_id=source_id, track=track, version=version)
    if outcome.info is not None:
        info = outcome.info
        track.duration_s, track.sample_rate, track.channels, track.codec = (
            info.duration_s,
            info.sample_rate,
            info.channels,
            info.codec,
        )
        track.note = outcome.note
    for version, (shard_row, first, rows) in placed.items():
        session.execute(
            delete(Segment).where(Segment.track_id == track.id, Segment.feature_version == version)
        )
        session.add_all(
            Segment(
                track_id=track.id,
                shard_id=shard_row.id,
                feature_version=version,
                row=first + i,
                index=i,
                start_s=start,
            )
            for i, start in enumerate(rows.starts_s)
        )


def _copy_segments(session: Session, *, source_id: int, track: Track, version: str) -> None:
    source = session.get(Track, source_id)
    assert source is not None
    session.execute(
        delete(Segment).where(Segment.track_id == track.id, Segment.feature_version == version)
    )
    for attr in ("duration_s", "sample_rate", "channels", "codec", "note"):
        setattr(track, attr, getattr(source, attr))
    session.add_all(
        Segment(
            track_id=track.id,
            shard_id=s.shard_id,
            feature_version=version,
            row=s.row,
            index=s.index,
            start_s=s.start_s,
        )
        for s in source.segments
        if s.feature_version == version
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
