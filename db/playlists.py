"""Queries behind labels and playlists: the user's own labels, and smart playlists, which
are rules over the labels that ``db.listing`` reads."""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.genretree import session_taxonomy
from db.listing import (
    SORT_KEYS,
    SQL_SORTS,
    UNKNOWN,
    USER,
    LabelledTrack,
    TrackFilter,
    labelled_tracks,
    normalize_genre,
)
from db.models import Model, Playlist, Prediction, Track, TrackStatus, UserLabel, utcnow
from db.moods import MoodRule
from db.registry import promoted_model
from genrectl.errors import GenreError, NotFoundError

ORDERS = ("confidence", "random", "title", "artist")


def _shuffle_key(seed: int, track: LabelledTrack) -> bytes:
    # Each track's place depends only on the seed and itself: adding a track to the
    # library does not reshuffle the rest of the playlist.
    return hashlib.sha256(f"{seed}:{track.id}".encode()).digest()


def order_tracks(
    tracks: Iterable[LabelledTrack], order: str, *, seed: int | None = None
) -> list[LabelledTrack]:
    if order == "random":
        return sorted(tracks, key=lambda t: _shuffle_key(seed or 0, t))
    return sorted(tracks, key=SORT_KEYS[order])


def cap_per_artist(tracks: Iterable[LabelledTrack], limit: int | None) -> list[LabelledTrack]:
    """Keep at most ``limit`` tracks per artist, in order; tracks without artist are kept."""
    if limit is None:
        return list(tracks)
    seen: Counter[str] = Counter()
    kept = []
    for track in tracks:
        if track.artist:
            key = track.artist.casefold()
            seen[key] += 1
            if seen[key] > limit:
                continue
        kept.append(track)
    return kept


def playlist_rule(playlist: Playlist) -> TrackFilter:
    """The tracks a playlist may hold, before its order, exclusions and limits (one place
    for both kinds of playlist)."""
    mood = MoodRule.from_dict(playlist.mood_rule)
    return TrackFilter(
        genres=playlist.genres,
        min_confidence=playlist.min_confidence,
        statuses=(TrackStatus.OK,),
        moods=mood.moods,
        min_energy=mood.min_energy,
        tempo=mood.tempo,
        scope=playlist.scope or "track",
    )


def excluded_genres(session: Session, playlist: Playlist) -> set[str]:
    """The raw labels ``--exclude-genre`` leaves out: each genre with the genres below it in
    the user's tree ("Rock" excludes metal)."""
    from db.genretree import session_taxonomy

    return set(session_taxonomy(session).expand(playlist.exclude_genres or ()))


def evaluate_playlist(
    session: Session, playlist: Playlist, *, model: Model | None = None
) -> list[LabelledTrack]:
    """The tracks a playlist's rule selects now, in its order."""
    if playlist.like_track_ids:
        from db.similar import similar_tracks  # numpy: not at import (cli stays fast)

        return similar_tracks(session, playlist, model=model)
    rule = playlist_rule(playlist)
    excluded = excluded_genres(session, playlist)
    if playlist.order_by in SQL_SORTS and playlist.max_per_artist is None and not excluded:
        # Only the order decides which tracks stay: the database cuts the list.
        return labelled_tracks(
            session, rule, model=model, sort=playlist.order_by, limit=playlist.max_tracks
        )
    found = labelled_tracks(session, rule, model=model)
    found = [t for t in found if t.genre is None or normalize_genre(t.genre) not in excluded]
    ordered = order_tracks(found, playlist.order_by, seed=playlist.seed)
    capped = cap_per_artist(ordered, playlist.max_per_artist)
    return capped if playlist.max_tracks is None else capped[: playlist.max_tracks]


@dataclass(frozen=True)
class PlaylistChange:
    name: str
    total: int
    added: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    problem: str | None = None  # why it could not be evaluated (a --like seed is gone)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tracks": self.total,
            "added": len(self.added),
            "removed": len(self.removed),
            **({"problem": self.problem} if self.problem else {}),
        }


def find_playlist(session: Session, name: str) -> Playlist:
    playlist = session.scalar(select(Playlist).where(Playlist.name == name))
    if playlist is None:
        raise NotFoundError(f"no playlist named {name!r}: run `genrectl playlist list`")
    return playlist


def list_playlists(session: Session) -> list[Playlist]:
    return list(session.scalars(select(Playlist).order_by(Playlist.name)))


def refresh_playlists(
    session: Session, names: Sequence[str] = (), *, model: Model | None = None
) -> list[PlaylistChange]:
    """Record what each playlist (all, or those named) selects now, and what changed."""
    playlists = [find_playlist(session, n) for n in names] if names else list_playlists(session)
    model = model or promoted_model(session)
    changes = []
    for playlist in playlists:
        try:
            now = [t.id for t in evaluate_playlist(session, playlist, model=model)]
        except GenreError as exc:  # a --like playlist's seed left: the others go on
            changes.append(PlaylistChange(playlist.name, 0, problem=str(exc)))
            continue
        before = set(playlist.track_ids or [])
        changes.append(
            PlaylistChange(
                playlist.name,
                len(now),
                added=[t for t in now if t not in before],
                removed=sorted(before - set(now)),
            )
        )
        playlist.track_ids, playlist.refreshed_at = now, utcnow()
    return changes


def known_genres(session: Session) -> set[str]:
    """Genres a label can have now: the promoted model's classes and the user's labels."""
    model = promoted_model(session)
    genres = set(session.scalars(select(UserLabel.genre).distinct()))
    if model is not None:
        genres |= {normalize_genre(c) for c in model.classes} | {UNKNOWN}
    taxonomy = session_taxonomy(session)  # a genre of the tree whose classes a label has
    return genres | {k for k in taxonomy.names if taxonomy.raw_classes(k) & genres}


def genre_counts(session: Session) -> dict[str, Any]:
    """Featurized tracks per label, with how many of them carry the user's own label."""
    tracks = labelled_tracks(session, TrackFilter(statuses=(TrackStatus.OK,)))
    per_genre: dict[str, Counter[str]] = defaultdict(Counter)
    for track in tracks:
        if track.genre is not None:
            per_genre[track.genre][track.source or ""] += 1
    rows: list[dict[str, Any]] = [
        {"genre": g, "tracks": sum(c.values()), "user_labelled": c[USER]}
        for g, c in per_genre.items()
    ]
    rows.sort(key=lambda r: (r["genre"] == UNKNOWN, -r["tracks"], r["genre"]))
    model = promoted_model(session)
    return {
        "model": None if model is None else model.name,
        "total": len(tracks),
        "unlabelled": sum(1 for t in tracks if t.genre is None),
        "genres": rows,
    }


def user_labels(session: Session) -> dict[int, str]:
    """track id -> the user's own genre (training data for ``train --from-library``)."""
    return dict(session.execute(select(UserLabel.track_id, UserLabel.genre)).all())


def set_user_label(session: Session, track: Track, genre: str | None) -> str | None:
    """Record (or with None, remove) the user's label for ``track``; returns the old one."""
    row = session.scalar(select(UserLabel).where(UserLabel.track_id == track.id))
    old = None if row is None else row.genre
    if genre is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(UserLabel(track_id=track.id, genre=normalize_genre(genre)))
    else:
        row.genre, row.created_at = normalize_genre(genre), utcnow()
    session.flush()
    return old


def find_track(session: Session, ref: str) -> Track:
    """A track by id, by path, or by the unique end of its path (``Artist/song.mp3``)."""
    if ref.isdigit() and (track := session.get(Track, int(ref))) is not None:
        return track
    absolute = os.path.abspath(os.path.expanduser(ref))
    for candidate in (ref, absolute):
        track = session.scalar(select(Track).where(Track.path == candidate))
        if track is not None:
            return track
    tail = "/" + ref.lstrip("/")
    matches = list(session.scalars(select(Track).where(Track.path.endswith(tail)).limit(6)))
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(t.path for t in matches[:5])
        raise NotFoundError(f"{ref!r} matches several tracks ({listed}): give the id or path")
    raise NotFoundError(f"no track {ref!r} in the library: run `genrectl tracks list`")


def model_genres(session: Session) -> dict[int, str]:
    """track id -> the genre models gave it: the promoted model's, else the latest one's."""
    promoted = promoted_model(session)
    rows = session.execute(
        select(Prediction.track_id, Prediction.genre, Prediction.model_id).order_by(
            Prediction.created_at, Prediction.id
        )
    )
    latest: dict[int, str] = {}
    chosen: dict[int, str] = {}
    for track_id, genre, model_id in rows:
        latest[track_id] = genre
        if promoted is not None and model_id == promoted.id:
            chosen[track_id] = genre
    return {**latest, **chosen}


def record_file_stamp(
    session: Session, track_id: int, *, size: int, mtime_ns: int, content_hash: str
) -> None:
    """After genrectl rewrote a file's tags: the next ingest must see it as unchanged."""
    track = session.get(Track, track_id)
    if track is not None:
        track.size, track.mtime_ns, track.content_hash = size, mtime_ns, content_hash
