from __future__ import annotations

import shutil
from pathlib import Path

import mutagen
import pytest
from mutagen.id3 import ID3, TCON, TIT2

from tests.conftest import RenderAudio
from worker.audio.tagwrite import (
    TagWriteError,
    read_field,
    read_raw,
    read_values,
    write_field,
    write_values,
)


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


MULTI = {
    "mp3": lambda p: ID3(p)["TCON"].text,
    "flac": lambda p: mutagen.File(p)["genre"],
    "ogg_vorbis": lambda p: mutagen.File(p)["genre"],
    "opus": lambda p: mutagen.File(p)["genre"],
    "m4a_aac": lambda p: mutagen.File(p).tags["\xa9gen"],
    "wma": lambda p: [str(v) for v in mutagen.File(p).tags["WM/Genre"]],
}


@pytest.mark.parametrize("name", list(MULTI))
def test_several_values_are_kept_apart_the_way_each_format_expects(
    render_audio: RenderAudio, tmp_path: Path, name: str
) -> None:
    path = copy(render_audio, name, tmp_path)
    write_values(path, "genre", ["jazz", "blues"])
    # ID3v2.4: one TCON frame, NUL-separated values; Vorbis: GENRE= twice; MP4: a list in
    # ©gen; ASF: WM/Genre twice.
    assert MULTI[name](path) == ["jazz", "blues"]
    assert read_values(path, "genre") == ["jazz", "blues"]
    assert read_field(path, "genre") == "jazz; blues"


def test_id3v23_joins_values_with_a_slash_and_reads_them_apart(
    render_audio: RenderAudio, tmp_path: Path
) -> None:
    path = copy(render_audio, "mp3", tmp_path)
    ID3().save(path, v2_version=3)
    write_values(path, "genre", ["jazz", "blues"])
    saved = ID3(path)
    assert saved.version[:2] == (2, 3) and saved["TCON"].text == ["jazz/blues"]
    assert read_values(path, "genre") == ["jazz", "blues"]


def test_the_raw_record_tells_absent_from_empty(render_audio: RenderAudio, tmp_path: Path) -> None:
    flac = copy(render_audio, "flac", tmp_path)
    assert read_raw(flac, "genre") == {"genre": None}
    audio = mutagen.File(flac)
    audio["genre"] = [""]
    audio.save()
    assert read_raw(flac, "genre") == {"genre": [""]} and read_values(flac, "genre") == []
    mp3 = copy(render_audio, "mp3", tmp_path)  # no ID3 tag at all
    assert read_raw(mp3, "grouping") == {"TIT1": None, "GRP1": None}
    tags = ID3()
    tags.add(TCON(encoding=3, text=["(17)"]))
    tags.save(mp3)
    # mutagen reads ID3v1 genre numbers as names; the undo's patch keeps the bytes anyway.
    assert read_raw(mp3, "genre") == {"TCON": ["Rock"]}
    m4a = copy(render_audio, "m4a_aac", tmp_path)
    assert read_raw(m4a, "genre") == {"\xa9gen": None, "gnre": None}
