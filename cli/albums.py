"""The album label beside a track's own, for ``show`` and ``tracks list`` (db.albums)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db.albums import UNKNOWN, album_of
from db.models import Track


def album_summary(session: Session, track: Track) -> dict[str, Any] | None:
    """The promoted model's label of ``track``'s album, None if not computed."""
    album = album_of(session, track)
    if album is None:
        return None
    return {
        "key": album.key,
        "genre": album.genre,
        "confidence": round(album.confidence, 4),
        "tracks": album.tracks,
    }


def album_fact(detail: dict[str, Any]) -> str:
    """``jazz 81% over 9 tracks; this track takes it`` (or keeps its own, and why)."""
    album = detail["album_label"]
    head = f"{album['genre']} {album['confidence']:.0%} over {album['tracks']} tracks"
    if detail["label_source"] == "user":
        return f"{head}; your label wins for this track"
    if album["genre"] == UNKNOWN:
        return f"{head}: unclear, every track keeps its own"
    if detail["album_genre"] == album["genre"]:
        return f"{head}; this track takes it"
    return f"{head}; this track keeps its own ({detail['album_genre']}): it clearly disagrees"
