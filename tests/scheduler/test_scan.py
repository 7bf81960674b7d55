from __future__ import annotations

import os
from pathlib import Path

from scheduler.scan import scan


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_scan_finds_audio_recursively_and_ignores_other_files(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "one.wav")
    _touch(tmp_path / "a" / "b" / "Two.FLAC")
    _touch(tmp_path / "a" / "cover.jpg")
    _touch(tmp_path / "a" / "album.cue")
    _touch(tmp_path / "a" / "info.nfo")
    result = scan([tmp_path])
    assert [Path(f.path).name for f in result.files] == ["Two.FLAC", "one.wav"]
    assert result.ignored == 3
    assert result.problems == []


def test_scan_survives_a_symlink_loop_and_counts_each_file_once(tmp_path: Path) -> None:
    _touch(tmp_path / "lib" / "x" / "song.mp3")
    os.symlink(tmp_path / "lib", tmp_path / "lib" / "x" / "loop")
    os.symlink(tmp_path / "lib" / "x" / "song.mp3", tmp_path / "lib" / "alias.mp3")
    result = scan([tmp_path / "lib"])
    assert len(result.files) == 1


def test_scan_reports_broken_links_and_keeps_unicode_paths(tmp_path: Path) -> None:
    _touch(tmp_path / "Sigur Rós — Ágætis byrjun" / "01 Svefn-g-englar.ogg")
    os.symlink(tmp_path / "nowhere.wav", tmp_path / "dangling.wav")
    result = scan([tmp_path])
    assert [Path(f.path).name for f in result.files] == ["01 Svefn-g-englar.ogg"]
    assert result.problems == [(str(tmp_path / "dangling.wav"), "broken symlink")]


def test_scan_accepts_a_single_file_and_records_size_and_mtime(tmp_path: Path) -> None:
    song = _touch(tmp_path / "single.wav", b"abc")
    (found,) = scan([song]).files
    assert (found.size, found.mtime_ns) == (3, song.stat().st_mtime_ns)
