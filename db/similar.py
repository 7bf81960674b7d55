""" "More like this": a playlist ordered by similarity to its seed tracks, under its rules.

Each labelled track has a vector (``worker.inference.vectors``, stored in ``track_vectors``
when it is labelled). A ``--like`` playlist's query is the mean of its seeds' unit vectors;
the library is ranked by cosine similarity to it, by numpy over every vector of the seeds'
key (brute force: BENCHMARKS.md, "More like this", measures it at 100k tracks), then walked
in that order through the playlist's rules (genres, minimum confidence, excluded genres,
artists capped) until the playlist is full. The seeds themselves are left out: the
playlist is what is *like* them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.listing import LabelledTrack, TrackFilter, labelled_tracks, normalize_genre
from db.models import Model, Playlist, Track, TrackStatus, TrackVector
from genrectl.errors import GenreError, NotFoundError

# A --like playlist without --limit stops at this many tracks (the whole library, ordered,
# is rarely what "more like this" means).
DEFAULT_LIMIT = 50
SIMILARITY = "similarity"  # the order of every --like playlist
# Tracks read per step of the walk down the ranking; doubled at each step, so that a rule
# that keeps few tracks (a rare genre) still needs only a few queries.
FIRST_STEP = 256
RELABEL_HINT = (
    "run `genrectl relabel` (tracks labelled before version 13 of the schema, or by a "
    "model on the reference mel, have none)"
)


class SeedGoneError(NotFoundError):
    """A --like playlist's seed track is no longer in the library."""


def _decode(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    return np.frombuffer(b"".join(blobs), dtype="<f2").reshape(len(blobs), dim)


def seed_key(session: Session, seeds: Sequence[int]) -> str:
    """The vector key every seed has (the one most tracks have, if several); GenreError
    naming a seed without a vector."""
    keys: Counter[str] = Counter()
    for seed in seeds:
        found = set(session.scalars(select(TrackVector.key).where(TrackVector.track_id == seed)))
        if not found:
            track = session.get(Track, seed)
            where = "" if track is None else f" ({track.path})"
            raise GenreError(f"track {seed}{where} has no similarity vector yet: {RELABEL_HINT}")
        keys.update(found)
    common = [k for k, n in keys.items() if n == len(seeds)]
    if not common:
        raise GenreError(
            f"the seeds {list(seeds)} were labelled with different encoders: {RELABEL_HINT}"
        )
    if len(common) == 1:
        return common[0]
    sizes = session.execute(
        select(TrackVector.key, func.count())
        .where(TrackVector.key.in_(common))
        .group_by(TrackVector.key)
    ).all()
    return str(max(sizes, key=lambda row: (row[1], row[0]))[0])


def library_vectors(session: Session, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Every track's vector under ``key``: (track ids int64 [N], float16 [N, dim])."""
    rows = session.execute(
        select(TrackVector.track_id, TrackVector.vector, TrackVector.dim).where(
            TrackVector.key == key
        )
    ).all()
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float16)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    return ids, _decode([r[1] for r in rows], rows[0][2])


def ranking(
    ids: np.ndarray, vectors: np.ndarray, query: np.ndarray, *, chunk: int = 16_384
) -> np.ndarray:
    """``ids`` ordered by cosine similarity of their ``vectors`` (unit, float16
    [N, dim]) to ``query`` (float32 [dim]), most similar first; ties by id."""
    scores = np.empty(len(ids), np.float32)
    for start in range(0, len(ids), chunk):  # float16 has no BLAS: convert a block at a time
        block = vectors[start : start + chunk].astype(np.float32)
        scores[start : start + chunk] = block @ query
    return ids[np.lexsort((ids, -scores))]


def query_vector(session: Session, key: str, seeds: Sequence[int]) -> np.ndarray:
    """The mean of the seeds' unit vectors, itself of unit length: float32 [dim]."""
    rows = session.execute(
        select(TrackVector.vector, TrackVector.dim).where(
            TrackVector.key == key, TrackVector.track_id.in_(list(seeds))
        )
    ).all()
    mean = _decode([r[0] for r in rows], rows[0][1]).astype(np.float32).mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def check_seeds(session: Session, playlist: Playlist) -> list[int]:
    """The playlist's seeds; SeedGoneError when one of them left the library."""
    seeds = list(playlist.like_track_ids or [])
    present = set(session.scalars(select(Track.id).where(Track.id.in_(seeds))))
    gone = [s for s in seeds if s not in present]
    if gone:
        what = "track " + ", ".join(map(str, gone))
        raise SeedGoneError(
            f"playlist {playlist.name!r}: its seed {what} is no longer in the library; "
            f"recreate it: genrectl playlist create {playlist.name!r} --like TRACK --replace"
        )
    return seeds


def _passes(track: LabelledTrack, excluded: set[str]) -> bool:
    """The rules tested on a labelled track rather than in SQL. --mood (issue 13, item 4)
    belongs in the TrackFilter of ``similar_tracks`` if moods are a column, or here."""
    return track.genre is None or normalize_genre(track.genre) not in excluded


def similar_tracks(
    session: Session, playlist: Playlist, *, model: Model | None = None
) -> list[LabelledTrack]:
    """What a --like playlist selects now: the library by similarity to its seeds, seeds
    left out, through its rules, at most ``max_tracks`` (default ``DEFAULT_LIMIT``)."""
    seeds = check_seeds(session, playlist)
    key = seed_key(session, seeds)
    ids, vectors = library_vectors(session, key)
    order = ranking(ids, vectors, query_vector(session, key, seeds))
    order = order[~np.isin(order, seeds)]
    rule = TrackFilter(
        genres=playlist.genres,
        min_confidence=playlist.min_confidence,
        statuses=(TrackStatus.OK,),
        # --mood: moods=playlist.moods, once TrackFilter has them (issue 13, item 4)
    )
    excluded = {normalize_genre(g) for g in playlist.exclude_genres or ()}
    limit = playlist.max_tracks or DEFAULT_LIMIT
    per_artist: Counter[str] = Counter()
    kept: list[LabelledTrack] = []
    start, step = 0, FIRST_STEP
    while start < len(order) and len(kept) < limit:
        chunk = order[start : start + step].tolist()
        start, step = start + step, step * 2
        found = {
            t.id: t
            for t in labelled_tracks(session, replace(rule, ids=chunk), model=model, sort="path")
        }
        for track_id in chunk:
            track = found.get(track_id)
            if track is None or not _passes(track, excluded):
                continue
            if track.artist and playlist.max_per_artist is not None:
                artist = track.artist.casefold()
                if per_artist[artist] >= playlist.max_per_artist:
                    continue
                per_artist[artist] += 1
            kept.append(track)
            if len(kept) == limit:
                break
    return kept
