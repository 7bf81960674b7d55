from __future__ import annotations

import shutil
from pathlib import Path

import mutagen
import pytest
from mutagen.id3 import ID3, TCON, TIT2

from tests.conftest import RenderAudio
from worker.audio.tagwrite import TagWriteError, read_field, write_field


def copy(render_audio: RenderAudio, name: str, tmp_path: Path) -> Path:
    source = render_audio(name, seconds=2.0)
    return Path(shutil.copyfile(source, tmp_path / source.name))


def test_id3_version_and_other_frames_are_kept(render_audio: RenderAudio, tmp_path: Path) -> None:
    path = copy(render_audio, "mp3", tmp_path)
    tags = ID3()
    tags.add(TIT2(encoding=3, text=["Café"]))
    tags.add(TCON(encoding=3, text=["(17)"]))  # ID3v1 genre number 17: Rock
    tags.save(path, v2_version=3)
    assert read_field(path, "genre") == "Rock"
    stamp = write_field(path, "genre", "jazz")
    saved = ID3(path)
    assert saved.version[:2] == (2, 3) and str(saved["TIT2"]) == "Café"
    assert saved["TCON"].text == ["jazz"]
    assert stamp.size == path.stat().st_size and len(stamp.sha256) == 64


def test_wav_gets_an_id3_chunk(render_audio: RenderAudio, tmp_path: Path) -> None:
    path = copy(render_audio, "wav_pcm16", tmp_path)
    write_field(path, "genre", "blues")
    assert read_field(path, "genre") == "blues"
    assert mutagen.File(path).info.length == pytest.approx(2.0, abs=0.01)


def test_formats_without_writable_tags_fail_alone_and_untouched(
    render_audio: RenderAudio, tmp_path: Path
) -> None:
    path = copy(render_audio, "au", tmp_path)
    before = path.read_bytes()
    with pytest.raises(TagWriteError, match="not an audio format mutagen knows"):
        write_field(path, "genre", "jazz")
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]
