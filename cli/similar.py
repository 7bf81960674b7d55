"""``playlist create --like``: resolving the seed tracks and describing the rule."""

from __future__ import annotations

import click
from sqlalchemy.orm import Session

from db.models import Playlist
from db.playlists import find_track
from genrectl.errors import GenreError


def resolve_seeds(session: Session, refs: tuple[str, ...]) -> list[int]:
    """The ids of the tracks ``refs`` name (id, path or the unique end of a path), each
    with a similarity vector; a bad one is a BadParameter naming it."""
    from db.similar import seed_key  # numpy: not at import

    seeds: list[int] = []
    for ref in refs:
        try:
            track_id = find_track(session, ref).id
        except GenreError as exc:
            raise click.BadParameter(str(exc), param_hint="--like") from None
        if track_id not in seeds:
            seeds.append(track_id)
    try:
        seed_key(session, seeds)
    except GenreError as exc:
        raise click.BadParameter(str(exc), param_hint="--like") from None
    return seeds


def like_summary(playlist: Playlist) -> list[str]:
    """The parts of a rule summary that only --like and --exclude-genre playlists have."""
    parts = []
    if playlist.like_track_ids:
        seeds = ", ".join(map(str, playlist.like_track_ids))
        parts.append(f"like track{'s' if len(playlist.like_track_ids) > 1 else ''} {seeds}")
    if playlist.exclude_genres:
        parts.append("not " + ", ".join(playlist.exclude_genres))
    return parts


def seed_notes(session: Session, playlist: Playlist) -> list[str]:
    """A line per seed whose file has gone missing (its stored vector still seeds)."""
    from sqlalchemy import select

    from db.models import Track, TrackStatus

    if not playlist.like_track_ids:
        return []
    gone = session.execute(
        select(Track.id, Track.path).where(
            Track.id.in_(playlist.like_track_ids), Track.status == TrackStatus.MISSING
        )
    ).all()
    return [
        f"note: seed track {track_id} ({path}) is missing from disk; its stored vector "
        "still seeds this playlist"
        for track_id, path in gone
    ]
