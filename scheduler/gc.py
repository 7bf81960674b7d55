"""``genrectl gc``: find, and remove, the stored features nothing uses any more.

- **orphan shard files**: files in the shard directory that no shard row names. A featurize
  chunk writes its shards, then records them in one transaction; if that commit fails (or
  the worker is killed in between) the files stay behind unreferenced. Temporary files of
  writes that never finished (``*.h5.tmp``) go the same way.
- **unused shard rows**: shards no segment row references any more (every track in them
  re-featurized, or their features removed below), with their files.
- **features of deleted tracks**: the segment rows and "more like this" vectors of tracks
  missing from the library for longer than ``missing_days`` (a library on a disk that is
  not mounted today must not lose its features at once); a shard left with no rows then
  goes as above. Their labels stay (a track that comes back is labelled again anyway).

Never a referenced shard, and safe while workers run: a file is only a candidate once it is
older than ``min_age_s`` (a shard is renamed into place a moment before its commit), and is
removed only if no row names it when it is removed; a shard row is deleted under a row lock
after checking again that no segment references it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.models import Segment, Shard, Track, TrackStatus, TrackVector, utcnow
from genrectl.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_MIN_AGE_S = 3600.0
DEFAULT_MISSING_DAYS = 7.0


@dataclass(frozen=True)
class StoredFile:
    path: str
    bytes: int


@dataclass
class Garbage:
    orphan_files: list[StoredFile] = field(default_factory=list)
    temp_files: list[StoredFile] = field(default_factory=list)
    unused_shards: list[StoredFile] = field(default_factory=list)  # rows (and their files)
    missing_tracks: list[str] = field(default_factory=list)  # paths whose features go
    missing_segments: int = 0
    missing_vectors: int = 0  # their "more like this" vectors (db.similar)

    @property
    def bytes(self) -> int:
        files = self.orphan_files + self.temp_files + self.unused_shards
        return sum(f.bytes for f in files)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bytes": self.bytes}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def local_path(settings: Settings, stored: str) -> Path:
    """Where this host sees a shard row's file: in its own shard directory when it is there
    (every node mounts the data dir, not necessarily at the same path)."""
    here = settings.shard_dir / Path(stored).name
    return here if here.exists() else Path(stored)


def _long_missing(missing_days: float) -> Any:
    cutoff = utcnow() - timedelta(days=missing_days)
    return select(Track.id).where(Track.status == TrackStatus.MISSING, Track.updated_at <= cutoff)


def _unused_shards(session: Session, *, min_age_s: float, missing_days: float) -> list[Shard]:
    """Shards older than ``min_age_s`` whose every segment (if any) belongs to a track
    missing for longer than ``missing_days``."""
    kept = select(Segment.id).where(
        Segment.shard_id == Shard.id, Segment.track_id.not_in(_long_missing(missing_days))
    )
    cutoff = utcnow() - timedelta(seconds=min_age_s)
    query = select(Shard).where(Shard.created_at <= cutoff, ~exists(kept)).order_by(Shard.id)
    return list(session.scalars(query))


def find_garbage(
    settings: Settings,
    *,
    min_age_s: float = DEFAULT_MIN_AGE_S,
    missing_days: float = DEFAULT_MISSING_DAYS,
) -> Garbage:
    """What ``collect_garbage`` would remove now."""
    garbage = Garbage()
    with session_scope(settings) as session:
        for shard in _unused_shards(session, min_age_s=min_age_s, missing_days=missing_days):
            path = local_path(settings, shard.path)
            garbage.unused_shards.append(StoredFile(str(path), _size(path)))
        missing = session.execute(
            select(Track.path, Segment.id)
            .join(Segment, Segment.track_id == Track.id)
            .where(Track.id.in_(_long_missing(missing_days)))
        ).all()
        garbage.missing_tracks = sorted({path for path, _ in missing})
        garbage.missing_segments = len(missing)
        garbage.missing_vectors = len(
            session.scalars(
                select(TrackVector.id).where(TrackVector.track_id.in_(_long_missing(missing_days)))
            ).all()
        )
        named = {Path(p).name for p in session.scalars(select(Shard.path))}
    oldest = time.time() - min_age_s
    for pattern, found in (("shard-*.h5", garbage.orphan_files), ("*.tmp", garbage.temp_files)):
        for path in sorted(settings.shard_dir.glob(pattern)) if settings.shard_dir.exists() else []:
            if path.name not in named and _mtime(path) <= oldest:
                found.append(StoredFile(str(path), _size(path)))
    return garbage


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()  # gone meanwhile: never a candidate


def collect_garbage(
    settings: Settings,
    *,
    dry_run: bool = False,
    min_age_s: float = DEFAULT_MIN_AGE_S,
    missing_days: float = DEFAULT_MISSING_DAYS,
) -> Garbage:
    """Remove the garbage (see the module docstring); returns what was (or, with
    ``dry_run``, would be) removed."""
    garbage = find_garbage(settings, min_age_s=min_age_s, missing_days=missing_days)
    if dry_run:
        return garbage
    with session_scope(settings) as session:
        for table in (Segment, TrackVector):
            session.execute(
                delete(table)
                .where(table.track_id.in_(_long_missing(missing_days)))
                .execution_options(synchronize_session=False)
            )
    removed = _remove_unused_shards(settings, min_age_s=min_age_s, missing_days=missing_days)
    garbage.unused_shards = removed
    for stored in garbage.orphan_files + garbage.temp_files:
        _remove_orphan(settings, Path(stored.path))
    files = len(removed) + len(garbage.orphan_files) + len(garbage.temp_files)
    if files or garbage.missing_segments:
        log.info(
            "gc: removed %d files (%d bytes), %d segment rows",
            files,
            garbage.bytes,
            garbage.missing_segments,
        )
    return garbage


def _remove_unused_shards(
    settings: Settings, *, min_age_s: float, missing_days: float
) -> list[StoredFile]:
    """Delete unused shard rows, each under a row lock and checked again; then their files
    (after the commit: a rolled-back delete must leave the file)."""
    removed: list[StoredFile] = []
    with session_scope(settings) as session:
        for shard in _unused_shards(session, min_age_s=min_age_s, missing_days=missing_days):
            locked = session.scalar(select(Shard).where(Shard.id == shard.id).with_for_update())
            used = session.scalar(select(exists().where(Segment.shard_id == shard.id)))
            if locked is None or used:
                continue
            path = local_path(settings, locked.path)
            removed.append(StoredFile(str(path), _size(path)))
            session.execute(delete(Shard).where(Shard.id == shard.id))
    for stored in removed:
        Path(stored.path).unlink(missing_ok=True)
    return removed


def _remove_orphan(settings: Settings, path: Path) -> None:
    """Unlink an orphan file unless a row has come to name it meanwhile."""
    with session_scope(settings) as session:
        named = session.scalar(select(exists().where(Shard.path.like(f"%/{path.name}"))))
    if not named:
        path.unlink(missing_ok=True)
