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
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from db import vector_cache
from db.listing import (
    LabelledTrack,
    labelled_tracks,
    matching_ids,
    normalize_genre,
)
from db.models import Model, Playlist, Track, TrackVector
from db.playlists import excluded_genres, playlist_rule
from genrectl.errors import GenreError, NotFoundError

# A --like playlist without --limit stops at this many tracks (the whole library, ordered,
# is rarely what "more like this" means).
DEFAULT_LIMIT = 50
SIMILARITY = "similarity"  # the order of every --like playlist
# Tracks read at the first step of the walk down the ranking, per track wanted (and at
# least MIN_STEP); doubled at each step, so that a rule that keeps few tracks (a rare genre)
# still needs only a few queries.
STEP_PER_TRACK = 2
MIN_STEP = 32
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
    """Every track's vector under ``key``: (track ids int64 [N], float16 or float32
    [N, dim]), from the cache file of the database's state when there is one
    (``db.vector_cache``), else read from the database (and cached).

    Read as plain rows (no ORM objects, no type processing): at 100k tracks this read is
    most of an uncached --like evaluation (BENCHMARKS.md, "More like this")."""
    directory = vector_cache.cache_dir(session)
    if directory is not None:
        now = vector_cache.state(session, key)  # first: rows read after are never older
        stem = vector_cache.stem(session, key)
        cached = vector_cache.read(directory, stem, now)
        if cached is not None:
            return cached
    rows = session.connection().execute(_LOAD, {"key": key}).all()
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float16)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = _decode([r[2] for r in rows], rows[0][1])
    if directory is not None and max(r[3] for r in rows) == now:
        vector_cache.write(directory, stem, now, ids, vectors)
    return ids, vectors


_LOAD = text("SELECT track_id, dim, vector, id FROM track_vectors WHERE key = :key")


def scores(vectors: np.ndarray, query: np.ndarray, *, chunk: int = 16_384) -> np.ndarray:
    """Cosine similarity of each of ``vectors`` (unit, float16/32 [N, dim]) to ``query`` (unit,
    float32 [dim]): float32 [N]."""
    out = np.empty(len(vectors), np.float32)
    for start in range(0, len(vectors), chunk):  # float16 has no BLAS: a block at a time
        out[start : start + chunk] = np.asarray(vectors[start : start + chunk], np.float32) @ query
    return out


def ranking(ids: np.ndarray, similarity: np.ndarray, *, top: int | None = None) -> np.ndarray:
    """``ids`` by ``similarity``, most similar first, ties by id; with ``top``, only the
    ``top`` first (a partition, then a sort of those: the rest is rarely needed)."""
    if top is not None and top < len(ids):
        head = np.argpartition(-similarity, top)[:top]
        return head[np.lexsort((ids[head], -similarity[head]))]
    return np.lexsort((ids, -similarity))


def ranked_chunks(
    ids: np.ndarray, similarity: np.ndarray, *, skip: Sequence[int], first: int
) -> Iterator[list[int]]:
    """Track ids in order of similarity (``skip`` left out), in chunks of ``first``, then
    twice as many each time: a rule that keeps few tracks still needs few queries. Only
    the first ``8 * first`` are sorted, unless the walk goes past them."""
    skipped = np.asarray(skip, dtype=np.int64)
    head = ranking(ids, similarity, top=8 * first)
    whole = len(head) == len(ids)  # else the rest is sorted if the walk reaches it
    pending = ids[head][~np.isin(ids[head], skipped)]
    step = first
    while len(pending) or not whole:
        if len(pending) < step and not whole:
            rest = np.ones(len(ids), bool)
            rest[head] = False
            order = ranking(ids, similarity)
            order = ids[order[rest[order]]]
            pending = np.concatenate([pending, order[~np.isin(order, skipped)]])
            whole = True
        yield pending[:step].tolist()
        pending, step = pending[step:], step * 2


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
    """The rules tested on a labelled track rather than in SQL (``playlist_rule`` has the
    others): the excluded genres."""
    return track.genre is None or normalize_genre(track.genre) not in excluded


def similar_tracks(
    session: Session, playlist: Playlist, *, model: Model | None = None
) -> list[LabelledTrack]:
    """What a --like playlist selects now: the library by similarity to its seeds, seeds
    left out, through its rules, at most ``max_tracks`` (default ``DEFAULT_LIMIT``)."""
    seeds = check_seeds(session, playlist)
    key = seed_key(session, seeds)
    ids, vectors = library_vectors(session, key)
    similarity = scores(vectors, query_vector(session, key, seeds))
    rule = playlist_rule(playlist)  # --genre, --min-confidence, --mood, --tempo...
    excluded = excluded_genres(session, playlist)
    limit = playlist.max_tracks or DEFAULT_LIMIT
    per_artist: Counter[str] = Counter()
    kept: list[LabelledTrack] = []
    if rule.genres:  # a genre's tracks, from its index range: the walk then reads few
        allowed = np.asarray(matching_ids(session, rule, model=model), dtype=np.int64)
        keep = np.isin(ids, allowed)
        ids, similarity = ids[keep], similarity[keep]
    first = max(MIN_STEP, STEP_PER_TRACK * limit)
    for chunk in ranked_chunks(ids, similarity, skip=seeds, first=first):
        if len(kept) == limit:
            break
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
