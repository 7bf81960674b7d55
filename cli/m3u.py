"""Extended M3U (``.m3u8``, UTF-8) playlists, and file names that stay in their folder.

The format media players read (VLC, mpv, MPD, foobar2000, Jellyfin)::

    #EXTM3U
    #PLAYLIST:Late night jazz
    #EXTINF:215,Miles Davis - So What
    /music/Miles Davis/Kind of Blue/01 So What.flac

Relative paths are resolved by players against the playlist file's folder.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from db.listing import LabelledTrack

SUFFIX = ".m3u8"
_MAX_NAME_BYTES = 200  # leaves room for the suffix and a " (2)" under common 255-byte limits
_FORBIDDEN = set('/\\:*?"<>|')
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}


def _bad_char(char: str) -> bool:
    return char in _FORBIDDEN or char in _BIDI or unicodedata.category(char) in ("Cc", "Cs")


def _truncate_utf8(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def safe_filename(name: str, *, fallback: str = "playlist") -> str:
    """``name`` as one file name: no separators, ``..``, NUL or control characters, no
    leading dot, no Windows device name (``CON``, ``NUL``, ``COM1``...), at most 200 bytes."""
    text = unicodedata.normalize("NFC", name)
    text = "".join("_" if _bad_char(c) else c for c in text)
    text = _truncate_utf8(text, _MAX_NAME_BYTES).strip(" .")
    if not text:
        text = fallback
    if text.split(".")[0].strip().upper() in _RESERVED:
        text = "_" + text
    return text


@dataclass
class NameRegistry:
    """Hands out distinct playlist file names inside ``directory`` (case-insensitively, as
    on macOS and Windows): ``Jazz.m3u8``, ``Jazz (2).m3u8``..."""

    directory: Path
    used: set[str] = field(default_factory=set)

    def path_for(self, name: str, *, prefix: str = "") -> Path:
        stem = safe_filename(prefix + name)
        candidate, n = stem, 1
        while candidate.casefold() in self.used:
            n += 1
            candidate = f"{stem} ({n})"
        self.used.add(candidate.casefold())
        path = self.directory / (candidate + SUFFIX)
        if path.parent != self.directory:  # cannot happen after safe_filename; never write out
            raise ValueError(f"playlist name {name!r} would leave {self.directory}")
        return path


def _one_line(text: str) -> str:
    return " ".join(text.split())


def extinf_title(track: LabelledTrack) -> str:
    """``Artist - Title`` (title alone without artist; the file name without title)."""
    title = _one_line(track.display_title)
    return f"{_one_line(track.artist)} - {title}" if track.artist else title


def entry_path(path: str, *, relative_to: Path | None) -> str:
    """The line for one file: absolute, or relative to ``relative_to`` with ``/``."""
    if relative_to is None:
        return path
    relative = Path(os.path.relpath(path, relative_to)).as_posix()
    # A line that starts with '#' is a comment to every player.
    return "./" + relative if relative.startswith("#") else relative


@dataclass(frozen=True)
class M3U:
    text: str
    written: int
    skipped: list[str]  # paths that cannot be one line of a playlist


def render_m3u(
    name: str, tracks: Iterable[LabelledTrack], *, relative_to: Path | None = None
) -> M3U:
    lines = ["#EXTM3U", f"#PLAYLIST:{_one_line(name)}"]
    skipped, written = [], 0
    for track in tracks:
        if "\n" in track.path or "\r" in track.path:
            skipped.append(track.path)
            continue
        seconds = -1 if track.duration_s is None else round(track.duration_s)
        lines.append(f"#EXTINF:{seconds},{extinf_title(track)}")
        lines.append(entry_path(track.path, relative_to=relative_to))
        written += 1
    return M3U("\n".join(lines) + "\n", written, skipped)


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 (raw bytes kept for undecodable file names) under a temporary name, then
    rename: a player never reads half a playlist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
