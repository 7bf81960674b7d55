"""Read artist/title/album/genre tags with mutagen. Never fails a track: tags are optional."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tags:
    artist: str | None = None
    title: str | None = None
    album: str | None = None
    genre: str | None = None
    album_artist: str | None = None


def _first(value: object) -> str | None:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if value is None:
        return None
    text = str(value).strip().replace("\x00", "")
    return text[:500] or None


def read_tags(path: Path) -> Tags:
    """The file's own tags (ID3, Vorbis comments, MP4 atoms, ASF...) in mutagen's easy form."""
    import mutagen

    try:
        audio = mutagen.File(path, easy=True)
    except (mutagen.MutagenError, OSError, ValueError, KeyError, IndexError) as exc:
        log.info("no tags read from %s: %s", path, exc)
        return Tags()
    if audio is None or audio.tags is None:
        return Tags()
    tags = audio.tags
    try:
        return Tags(
            artist=_first(tags.get("artist")),
            title=_first(tags.get("title")),
            album=_first(tags.get("album")),
            genre=_first(tags.get("genre")),
            album_artist=_first(tags.get("albumartist")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        log.info("unreadable tags in %s: %s", path, exc)
        return Tags()
