"""Record a featurized chunk in the database: one transaction, each track once.

Every outcome of a chunk (rows computed, rows reused from a copy, a file that failed, a
track deferred by an internal error) is written here, after the jobs and tracks are locked,
so that two deliveries of the same work record it once, whatever order they finish in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.albums import album_key
from db.models import Job, JobStatus, Segment, Shard, Track, TrackStatus, utcnow
from worker.audio.decode import AudioInfo
from worker.audio.tags import Tags
from worker.features.compute import FeatureRows
from worker.features.rhythm import Rhythm
from worker.features.shards import ShardInfo

# A file on which a worker process died (or genrectl met a bug) this many times fails alone.
MAX_ATTEMPTS = 3


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
    rhythm: Rhythm | None = None


def record_outcomes(
    session: Session, batch_id: int, outcomes: list[Outcome], shards: dict[str, ShardInfo]
) -> tuple[int, int, int, set[str]]:
    """Write every outcome of the chunk, skipping tracks another delivery already finished.

    Returns (done, failed, deferred, the feature versions whose new shard is referenced). The
    job and
    track rows are locked first, in id order, so two deliveries of the same work (or two
    batches of the same files) record it once, whatever order they finish in.
    """
    still_queued = _lock_queued(session, batch_id, [o.track_id for o in outcomes])
    shard_rows: dict[str, Shard] = {}
    first_row = {version: 0 for version in shards}
    done = failed = deferred = 0
    for outcome in outcomes:
        if outcome.track_id in still_queued and outcome.status == TrackStatus.PENDING:
            gave_up = _defer(session, batch_id, outcome.track_id, outcome.error or "internal error")
            failed, deferred = failed + gave_up, deferred + (not gave_up)
        elif outcome.track_id in still_queued:
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
    return done, failed, deferred, set(shard_rows)


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
    track.album_artist = tags.album_artist
    track.album_key = album_key(
        track.path, artist=tags.artist, album_artist=tags.album_artist, album=tags.album
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
    if outcome.rhythm is not None:
        track.tempo_bpm, track.energy = outcome.rhythm.tempo_bpm, outcome.rhythm.energy
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
    for attr in ("duration_s", "sample_rate", "channels", "codec", "note", "tempo_bpm", "energy"):
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


def _defer(session: Session, batch_id: int, track_id: int, error: str) -> bool:
    """An internal error (a bug) met on this track: its job stays queued with the error
    noted and one try counted; the track stays as it was. After MAX_ATTEMPTS tries, this
    batch's and earlier interrupted batches', it fails alone so that one file cannot stop
    every run. Returns True when it failed."""
    job = _job(session, batch_id, track_id)
    if job is None:
        return False
    job.attempts, job.error = job.attempts + 1, error
    earlier = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(
            Job.track_id == track_id,
            Job.id != job.id,
            Job.status == JobStatus.CANCELLED,
            Job.error.like("internal error%"),
        )
    )
    tries = job.attempts + int(earlier or 0)
    if tries < MAX_ATTEMPTS:
        return False
    reason = f"{error} (on {tries} tries: a bug in genrectl, please report it)"
    failed = Outcome(track_id, TrackStatus.FAILED, error=reason)
    track = session.get(Track, track_id)
    if track is not None:
        failed.content_hash, failed.tags = track.content_hash, _tags_of(track)
    _record_track(session, failed, {})
    _finish_job(session, batch_id, track_id, False, reason)
    return True


def _tags_of(track: Track) -> Tags:
    return Tags(
        artist=track.artist,
        title=track.title,
        album=track.album,
        genre=track.genre_tag,
        album_artist=track.album_artist,
    )


def _job(session: Session, batch_id: int, track_id: int) -> Job | None:
    return session.scalar(
        select(Job).where(
            Job.batch_id == batch_id, Job.kind == "featurize", Job.track_id == track_id
        )
    )


def _finish_job(
    session: Session, batch_id: int, track_id: int, ok: bool, error: str | None
) -> None:
    job = _job(session, batch_id, track_id)
    if job is not None:
        job.status = JobStatus.DONE if ok else JobStatus.FAILED
        job.error, job.finished_at = error, utcnow()
