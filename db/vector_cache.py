"""A memory-mapped copy of one key's track vectors, keyed by the database's state.

Reading 100k vectors from the database row by row costs far more than ranking them
(BENCHMARKS.md, "More like this"), so the first ``--like`` evaluation after a change writes
them, as float32, to ``<data dir>/cache/vectors/``, and later ones map that file. The state
is one key's newest vector id, one step down the ``(key, id)`` index: every write of a
vector gives it a new id, never reused (AUTOINCREMENT in SQLite, a sequence in
PostgreSQL), so a file made before a write is never used after it. A delete (a track
leaving the library takes its vector along) does not change the state, and need not: the
cache may then hold a vector of a track that is gone, which the walk through the rules
skips as it skips any track it does not find (counting the rows would cost a scan of the
index: 60 ms at 100k, more than the rest of a warm evaluation). Files are named after the
database, the key and the state, written to a temporary name and renamed (ids last: a
reader opens a state only when its ids file exists), and older states' files are removed.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import TrackVector

log = logging.getLogger(__name__)


def cache_dir(session: Session) -> Path | None:
    """Where the session's settings keep vector caches (None: a session without them)."""
    settings = session.info.get("settings")
    return None if settings is None else Path(settings.data_dir) / "cache" / "vectors"


def stem(session: Session, key: str) -> str:
    url = session.get_bind().engine.url.render_as_string(hide_password=True)
    return hashlib.sha256(f"{url}|{key}".encode()).hexdigest()[:16]


def state(session: Session, key: str) -> int:
    """The newest vector id under ``key`` (0: none): changes with every write."""
    newest = session.scalar(select(func.max(TrackVector.id)).where(TrackVector.key == key))
    return int(newest or 0)


def _paths(directory: Path, stem: str, now: int) -> tuple[Path, Path]:
    base = f"{stem}-{now}"
    return directory / f"{base}.ids.npy", directory / f"{base}.vectors.npy"


def read(directory: Path, stem: str, now: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (ids, float32 vectors) of state ``now``, mapped; None if there is none."""
    ids_path, vectors_path = _paths(directory, stem, now)
    try:
        ids = np.load(ids_path, mmap_mode="r")
        vectors = _populated(vectors_path)
    except (OSError, ValueError):
        return None
    return (ids, vectors) if len(ids) == len(vectors) else None


def _populated(path: Path) -> np.ndarray:
    """The .npy array at ``path``, mapped read-only with its pages mapped at once
    (MAP_POPULATE, where there is one): a fresh map of 77 MB otherwise takes a page fault
    per 4 KB as the product reads it, which cost as much as the product itself."""
    header = np.load(path, mmap_mode="r")
    shape, dtype, offset = header.shape, header.dtype, header.offset
    del header
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    with path.open("rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
    count = int(np.prod(shape))
    return np.frombuffer(mapped, dtype=dtype, count=count, offset=offset).reshape(shape)


def write(directory: Path, stem: str, now: int, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Cache (ids, vectors) as state ``now``; a failure only costs the next reader a load."""
    ids_path, vectors_path = _paths(directory, stem, now)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for path, array in ((vectors_path, vectors.astype(np.float32)), (ids_path, ids)):
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with tmp.open("wb") as handle:
                np.save(handle, array)
            tmp.replace(path)
        for old in directory.glob(f"{stem}-*.npy"):
            if old not in (ids_path, vectors_path):
                old.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not cache track vectors in %s: %s", directory, exc)
