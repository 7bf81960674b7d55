"""Find the audio files under the library roots, without reading them."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# Extensions genrectl tries to decode. Anything else (cover.jpg, .cue, .nfo, .m3u) is
# ignored without noise; a non-audio file *named* like audio is tried and fails alone.
AUDIO_EXTENSIONS = frozenset(
    [
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".m4a",
        ".m4b",
        ".mp4",
        ".aac",
        ".alac",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".snd",
        ".wma",
        ".asf",
        ".wv",
        ".ape",
        ".mka",
        ".webm",
        ".caf",
        ".w64",
        ".rf64",
    ]
)


@dataclass(frozen=True)
class FileStat:
    path: str  # absolute, as reached from the root (symlinked folders keep their name)
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    files: list[FileStat] = field(default_factory=list)
    ignored: int = 0  # non-audio files
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def is_audio_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def _printable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def scan(roots: Iterable[Path]) -> ScanResult:
    """Walk each root recursively. Follows symlinks, visiting each real folder and file once.

    A symlink loop is therefore harmless; a broken link or an unreadable folder is reported
    in ``problems`` and the walk goes on.
    """
    result = ScanResult()
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    for root in roots:
        root_path = os.path.abspath(os.path.expanduser(str(root)))
        if os.path.isfile(root_path):
            _add_file(root_path, result, seen_files)
        else:
            _walk(root_path, result, seen_dirs, seen_files)
    result.files.sort(key=lambda f: f.path)
    return result


def _walk(
    top: str, result: ScanResult, seen_dirs: set[tuple[int, int]], seen_files: set[tuple[int, int]]
) -> None:
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            info = os.stat(folder)
        except OSError as exc:
            result.problems.append((folder, f"cannot open folder: {exc.strerror}"))
            continue
        if (info.st_dev, info.st_ino) in seen_dirs:
            continue  # already walked (a symlink loop or a second link to the same folder)
        seen_dirs.add((info.st_dev, info.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            result.problems.append((folder, f"cannot list folder: {exc.strerror}"))
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                stack.append(entry.path)
            elif is_audio_name(entry.name):
                _add_file(entry.path, result, seen_files)
            else:
                result.ignored += 1


def _add_file(path: str, result: ScanResult, seen_files: set[tuple[int, int]]) -> None:
    if not _printable(path):
        result.problems.append((repr(path), "file name is not valid UTF-8; rename it"))
        return
    try:
        info = os.stat(path)
    except OSError as exc:
        reason = "broken symlink" if os.path.islink(path) else f"cannot stat: {exc.strerror}"
        result.problems.append((path, reason))
        return
    if (info.st_dev, info.st_ino) in seen_files:
        return
    seen_files.add((info.st_dev, info.st_ino))
    result.files.append(FileStat(path=path, size=info.st_size, mtime_ns=info.st_mtime_ns))
