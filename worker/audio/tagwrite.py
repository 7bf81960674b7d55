"""Write a genre (or grouping) tag into an audio file with mutagen, leaving audio untouched.

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

Several values (``tags write --max-genres``) are kept the way each format expects: ID3v2.4
one frame with NUL-separated values; ID3v2.3 (a file's version is kept) one value joined
with "/"; Vorbis comments one ``GENRE=`` field per value; MP4 a list in ``©gen``; ASF one
attribute per value; APEv2 NUL-separated values.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genrectl.errors import GenreError

FIELDS = ("genre", "grouping", "mood")
V23_SEPARATOR = "/"  # between several values of one ID3v2.3 text frame


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


MP4_MOOD = "----:com.apple.iTunes:MOOD"  # a freeform atom: its values are bytes

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
    # Mood: the names Picard and foobar2000 use. ID3's TMOO exists in v2.4 only.
    ("vorbis", "mood"): ["mood"],
    ("mp4", "mood"): [MP4_MOOD],
    ("asf", "mood"): ["WM/Mood"],
    ("ape", "mood"): ["Mood"],
    ("id3", "mood"): ["TMOO"],
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


def _text(value: Any) -> Any:
    if isinstance(value, bytes):  # an MP4 freeform value (MP4FreeForm is bytes)
        return value.decode("utf-8", "replace")
    return value if isinstance(value, int | str) else str(value)


def _strings(value: Any) -> list[Any]:
    """The values a tag holds, exactly as stored (ID3 text, MP4 ints, ASF and APE text)."""
    if hasattr(value, "text"):  # an ID3 text frame
        return list(value.text)
    if isinstance(value, list | tuple):
        return [_text(v) for v in value]
    if hasattr(value, "kind") and hasattr(value, "__iter__"):  # an APEv2 text value
        return list(value)
    return [value if isinstance(value, int | str) else str(value)]


def _values(tags: Any, kind: str, key: str) -> list[str]:
    """A tag's non-blank values as text: ID3 genres resolved ("(17)" -> "Rock"); one
    ID3v2.3 value split on "/", the separator v2.3 files get from mutagen (and Picard)."""
    value = tags.get(key)
    if value is None:
        return []
    out = list(value.genres) if hasattr(value, "genres") else [str(v) for v in _strings(value)]
    if kind == "id3" and tags.version[:2] == (2, 3) and len(out) == 1:
        out = out[0].split(V23_SEPARATOR)
    return [v.strip() for v in out if v.strip()]


def read_values(path: Path, field: str) -> list[str]:
    """Every value of the file's ``field`` ("genre" or "grouping"), in the file's order;
    [] when the field is absent or blank.

    Raises TagWriteError when the file cannot be read or its format holds no such tag."""
    audio = _open(path)
    if audio.tags is None:
        return []
    kind = _kind(audio.tags, path)
    for key in _KEYS[(kind, field)]:
        values = _values(audio.tags, kind, key)
        if values:
            return values
    return []


def read_field(path: Path, field: str) -> str | None:
    """The file's current ``field`` ("genre" or "grouping") as one line ("jazz; blues" for
    several values), or None when it has none. Raises TagWriteError like ``read_values``."""
    return "; ".join(read_values(path, field)) or None


def _raw_keys(kind: str, field: str) -> list[str]:
    # MP4's numeric genre goes when ``©gen`` is written (see set_values): an exact record keeps it.
    return [*_KEYS[(kind, field)], *(["gnre"] if (kind, field) == ("mp4", "genre") else [])]


def read_raw(path: Path, field: str) -> dict[str, list[Any] | None]:
    """Each native tag behind ``field`` with its values as stored (ID3 frames as mutagen
    reads them: a v2.3 "(17)" is "Rock"), None where the file has no such tag (absent,
    which is not the same as a tag holding "")."""
    audio = _open(path)
    absent = audio.tags is None
    if absent:
        audio.add_tags()  # in memory only: which kind of tags this format takes
    kind = _kind(audio.tags, path)
    return {
        key: None if absent or audio.tags.get(key) is None else _strings(audio.tags.get(key))
        for key in _raw_keys(kind, field)
    }


def set_values(tags: Any, kind: str, field: str, values: list[str]) -> None:
    """Set the native tags behind ``field`` in ``tags`` (of ``kind``) to ``values``."""
    if kind == "id3":
        from mutagen.id3 import GRP1, TCON, TIT1, TMOO

        if field == "mood" and tags.version[:2] == (2, 3):
            raise ValueError("ID3v2.3 has no mood frame (TMOO is ID3v2.4's)")
        frames = {"TCON": TCON, "TIT1": TIT1, "GRP1": GRP1, "TMOO": TMOO}
        for key in _KEYS[(kind, field)]:
            tags.setall(key, [frames[key](encoding=3, text=values)])
        return
    for key in _KEYS[(kind, field)]:
        tags[key] = _native(key, values)
    if kind == "mp4" and field == "genre":
        tags.pop("gnre", None)  # the numeric ID3v1-style genre would contradict ours


def _native(key: str, values: list[Any]) -> list[Any]:
    if key == MP4_MOOD:
        from mutagen.mp4 import MP4FreeForm

        return [MP4FreeForm(str(v).encode("utf-8")) for v in values]
    return list(values)


def _set_raw(tags: Any, kind: str, raw: dict[str, list[Any] | None]) -> None:
    """Put back each native tag's values as recorded, or remove the tags that were absent."""
    for key, values in raw.items():
        if values is None:
            if kind == "id3":
                tags.delall(key)
            elif key in tags:  # Vorbis comments are a list: no pop(key, default)
                del tags[key]
        elif kind == "id3":
            from mutagen.id3 import Frames

            tags.setall(key, [Frames[key](encoding=3, text=[str(v) for v in values])])
        else:
            tags[key] = _native(key, values)


def _save(audio: Any, kind: str) -> None:
    if kind == "id3":
        # Keep the file's ID3 version: v2.3 is what older players and Windows read. v2.4
        # keeps several values apart (NUL-separated); v2.3 has no such thing, so they are
        # joined with "/" there (mutagen's and Picard's convention; read back split on it).
        version = 3 if audio.tags.version[:2] == (2, 3) else 4
        audio.save(v2_version=version, v23_sep=V23_SEPARATOR)
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


def _stage(path: Path) -> Path:
    return path.with_name(f".{path.stem}.genrectl-{os.getpid()}{path.suffix}")


@contextmanager
def staged_edit(path: Path, edit: Callable[[Any, str], None]) -> Iterator[Path]:
    """Apply ``edit(tags, kind)`` to a copy of ``path`` (same folder, same suffix, hidden),
    yield the finished copy, and rename it over ``path`` when the block ends without error.

    The block sees both versions (to record the change before it happens). Raises
    TagWriteError, leaving ``path`` untouched, when the format cannot hold the tag or the
    file or its folder cannot be written."""
    import mutagen

    cls = type(_open(path))
    tmp = _stage(path)
    try:
        try:
            shutil.copy2(path, tmp)
            audio = _open(tmp, cls)
            if audio.tags is None:
                audio.add_tags()
            kind = _kind(audio.tags, path)
            edit(audio.tags, kind)
            _save(audio, kind)
            _fsync(tmp)
        except (mutagen.MutagenError, OSError, ValueError) as exc:
            raise TagWriteError(path, str(exc)) from None
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise TagWriteError(path, str(exc)) from None
    finally:
        tmp.unlink(missing_ok=True)


def stamp_of(path: Path) -> FileStamp:
    """The file's size, mtime and sha256 as they are now."""
    info = path.stat()
    return FileStamp(info.st_size, info.st_mtime_ns, _sha256(path))


def write_values(path: Path, field: str, values: Sequence[str]) -> FileStamp:
    """Set ``field`` ("genre" or "grouping") of the file at ``path`` to ``values`` (several
    values the way the format keeps them: see the module's docstring), on a copy renamed
    over ``path``. Raises TagWriteError, leaving ``path`` untouched, when that fails."""
    check_field(field)
    with staged_edit(path, lambda tags, kind: set_values(tags, kind, field, list(values))) as tmp:
        stamp = stamp_of(tmp)  # a rename keeps size and mtime
    return stamp


def write_field(path: Path, field: str, value: str) -> FileStamp:
    """Set ``field`` ("genre" or "grouping") of the file at ``path`` to the one ``value``."""
    return write_values(path, field, [value])


def restore_raw(path: Path, raw: dict[str, list[Any] | None]) -> FileStamp:
    """Put back native tags as ``read_raw`` recorded them (values only: the file's bytes are
    not guaranteed to be the ones it had; ``tags undo`` uses this only with --force)."""
    with staged_edit(path, lambda tags, kind: _set_raw(tags, kind, raw)) as tmp:
        stamp = stamp_of(tmp)
    return stamp


def check_field(field: str) -> None:
    if field not in FIELDS:
        raise ValueError(f"field={field!r} must be one of {', '.join(FIELDS)}")
