"""Write one genre (or grouping) tag into an audio file with mutagen, leaving audio untouched.

mutagen rewrites only metadata (ID3 frames, Vorbis comment packets, MP4 atoms); the audio
frames are copied as bytes. The file is changed on a copy beside it that is then renamed
over the original, so a crash or a full disk never leaves half a file.

| format | genre | grouping |
|---|---|---|
| MP3, WAV, AIFF (ID3) | ``TCON`` | ``TIT1`` (most players) and ``GRP1`` (iTunes 12.5+) |
| FLAC, Ogg Vorbis, Opus (Vorbis comments) | ``GENRE`` | ``GROUPING`` |
| MP4/M4A | ``©gen`` | ``©grp`` |
| WMA (ASF) | ``WM/Genre`` | ``WM/ContentGroupDescription`` |
| APEv2 (WavPack, Musepack, Monkey's) | ``Genre`` | ``Grouping`` |
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genrectl.errors import GenreError

FIELDS = ("genre", "grouping")


class TagWriteError(GenreError):
    """A file's tags could not be read or written; the file is left as it was."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot write tags of '{path}': {reason}")


@dataclass(frozen=True)
class FileStamp:
    """A file as written: what the library records so the next ingest sees it unchanged."""

    size: int
    mtime_ns: int
    sha256: str


def _kind(tags: Any, path: Path) -> str:
    from mutagen._vorbis import VCommentDict  # the base of FLAC's, Vorbis' and Opus' comments
    from mutagen.apev2 import APEv2
    from mutagen.asf import ASFTags
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags

    kinds = ((ID3, "id3"), (VCommentDict, "vorbis"), (MP4Tags, "mp4"), (ASFTags, "asf"))
    for cls, name in (*kinds, (APEv2, "ape")):
        if isinstance(tags, cls):
            return name
    raise TagWriteError(path, f"genrectl cannot write {type(tags).__name__} tags")


_KEYS = {
    ("vorbis", "genre"): ["genre"],
    ("vorbis", "grouping"): ["grouping"],
    ("mp4", "genre"): ["\xa9gen"],
    ("mp4", "grouping"): ["\xa9grp"],
    ("asf", "genre"): ["WM/Genre"],
    ("asf", "grouping"): ["WM/ContentGroupDescription"],
    ("ape", "genre"): ["Genre"],
    ("ape", "grouping"): ["Grouping"],
    ("id3", "genre"): ["TCON"],
    ("id3", "grouping"): ["TIT1", "GRP1"],
}


def _open(path: Path, cls: Any = None) -> Any:
    import mutagen

    try:
        audio = mutagen.File(path) if cls is None else cls(path)
    except (mutagen.MutagenError, OSError, ValueError) as exc:
        raise TagWriteError(path, f"unreadable: {exc}") from None
    if audio is None:
        raise TagWriteError(path, "not an audio format mutagen knows")
    return audio


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "genres"):  # ID3 TCON: "(17)" and "Rock" both become "Rock"
        value = value.genres
    elif hasattr(value, "text"):
        value = value.text
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    text = None if value is None else str(value).strip()
    return text or None


def read_field(path: Path, field: str) -> str | None:
    """The file's current ``field`` ("genre" or "grouping"), or None when it has none.

    Raises TagWriteError when the file cannot be read or its format holds no such tag."""
    audio = _open(path)
    if audio.tags is None:
        return None
    for key in _KEYS[(_kind(audio.tags, path), field)]:
        text = _text(audio.tags.get(key))
        if text:
            return text
    return None


def _set(tags: Any, kind: str, field: str, value: str) -> None:
    if kind == "id3":
        from mutagen.id3 import GRP1, TCON, TIT1

        frames = {"TCON": TCON, "TIT1": TIT1, "GRP1": GRP1}
        for key in _KEYS[(kind, field)]:
            tags.setall(key, [frames[key](encoding=3, text=[value])])
        return
    for key in _KEYS[(kind, field)]:
        tags[key] = [value]
    if kind == "mp4" and field == "genre":
        tags.pop("gnre", None)  # the numeric ID3v1-style genre would contradict ours


def _save(audio: Any, kind: str) -> None:
    if kind == "id3":
        # Keep the file's ID3 version: v2.3 is what older players and Windows read.
        version = 3 if audio.tags.version[:2] == (2, 3) else 4
        audio.save(v2_version=version)
    else:
        audio.save()


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_field(path: Path, field: str, value: str) -> FileStamp:
    """Set ``field`` ("genre" or "grouping") of the file at ``path`` to ``value``.

    Works on a copy (same folder, same suffix, hidden) renamed over ``path`` when complete.
    Raises TagWriteError, leaving ``path`` untouched, when the format cannot hold the tag or
    the file or its folder cannot be written."""
    import mutagen

    if field not in FIELDS:
        raise ValueError(f"field={field!r} must be one of {', '.join(FIELDS)}")
    cls = type(_open(path))
    tmp = path.with_name(f".{path.stem}.genrectl-{os.getpid()}{path.suffix}")
    try:
        shutil.copy2(path, tmp)
        audio = _open(tmp, cls)
        if audio.tags is None:
            audio.add_tags()
        kind = _kind(audio.tags, path)
        _set(audio.tags, kind, field, value)
        _save(audio, kind)
        _fsync(tmp)
        sha256 = _sha256(tmp)
        os.replace(tmp, path)
        info = path.stat()
    except (mutagen.MutagenError, OSError) as exc:
        raise TagWriteError(path, str(exc)) from None
    finally:
        tmp.unlink(missing_ok=True)
    return FileStamp(info.st_size, info.st_mtime_ns, sha256)
