from __future__ import annotations

import os
import shutil
from pathlib import Path

import av
import mutagen
import numpy as np
import pytest
from sqlalchemy import select

from db.engine import session_scope
from db.models import Track
from tests.cli.conftest import Invoke, json_of
from tests.cli.library import Song, seed_library
from tests.conftest import RenderAudio
from worker.audio.tagwrite import read_field, write_field

FORMATS = {"mp3": "mp3", "flac": "flac", "ogg": "ogg_vorbis", "m4a": "m4a_aac"}


@pytest.fixture
def files(tmp_path: Path, render_audio: RenderAudio) -> dict[str, Path]:
    """Copies of real 2 s files, one per format, in a library folder."""
    folder = tmp_path / "music"
    folder.mkdir()
    out = {}
    for suffix, name in FORMATS.items():
        out[suffix] = folder / f"song.{suffix}"
        shutil.copyfile(render_audio(name, seconds=2.0), out[suffix])
    return out


def decoded(path: Path) -> np.ndarray:
    """Every decoded sample of the file's first audio stream."""
    with av.open(str(path)) as container:
        return np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=-1)


def library(tmp_path: Path, files: dict[str, Path], **genres: tuple[str, float]) -> dict[str, int]:
    songs = [
        Song(str(path), *genres.get(suffix, ("jazz", 0.9)), title=suffix)
        for suffix, path in files.items()
    ]
    return seed_library(tmp_path, songs, as_featurized=True)[1]


def test_dry_run_touches_no_file(genrectl: Invoke, tmp_path: Path, files: dict[str, Path]) -> None:
    library(tmp_path, files)
    before = {p: p.read_bytes() for p in files.values()}
    summary = json_of(genrectl("tags", "write", "--dry-run", "--json"))
    assert summary["would_write"] == 4 and summary["failed"] == 0
    assert {t["value"] for t in summary["tracks"]} == {"Jazz"}
    assert {p: p.read_bytes() for p in files.values()} == before
    assert "would write genre in 4 files" in genrectl("tags", "write", "--dry-run").stdout


def test_write_changes_tags_but_not_audio_and_ingest_sees_no_change(
    genrectl: Invoke, tmp_path: Path, files: dict[str, Path]
) -> None:
    ids = library(tmp_path, files)
    audio = {suffix: decoded(path) for suffix, path in files.items()}
    summary = json_of(genrectl("tags", "write", "--json"))
    assert (summary["written"], summary["failed"]) == (4, 0)
    settings_home = tmp_path / "home"
    for suffix, path in files.items():
        assert mutagen.File(path, easy=True)["genre"] == ["Jazz"], suffix
        np.testing.assert_array_equal(decoded(path), audio[suffix], err_msg=suffix)
        assert not list(path.parent.glob(".*")), "no temporary file is left behind"
    from genrectl.settings import Settings

    with session_scope(Settings.from_env({"GENRECTL_HOME": str(settings_home)})) as session:
        for track in session.scalars(select(Track).where(Track.id.in_(ids.values()))):
            info = os.stat(track.path)
            assert (track.size, track.mtime_ns) == (info.st_size, info.st_mtime_ns)
    report = json_of(genrectl("ingest", str(tmp_path / "music"), "--json"))
    assert (report["unchanged"], report["changed"], report["featurized"]) == (4, 0, 0)
    again = json_of(genrectl("tags", "write", "--json"))
    assert (again["written"], again["unchanged"]) == (0, 4)


def test_grouping_goes_to_each_formats_grouping_tag(
    genrectl: Invoke, tmp_path: Path, files: dict[str, Path]
) -> None:
    library(tmp_path, files)
    genrectl("tags", "write", "--field", "grouping")
    mp3 = mutagen.File(files["mp3"])
    assert str(mp3.tags["TIT1"]) == "Jazz" and str(mp3.tags["GRP1"]) == "Jazz"
    assert "TCON" not in mp3.tags
    assert mutagen.File(files["flac"])["grouping"] == ["Jazz"]
    assert mutagen.File(files["ogg"])["grouping"] == ["Jazz"]
    assert mutagen.File(files["m4a"]).tags["\xa9grp"] == ["Jazz"]
    for path in files.values():
        assert read_field(path, "grouping") == "Jazz" and read_field(path, "genre") is None


def test_refuses_where_your_label_differs_or_the_model_is_unsure(
    genrectl: Invoke, tmp_path: Path, files: dict[str, Path]
) -> None:
    write_field(files["flac"], "genre", "Rock")  # the user's own tag, there before ingest
    library(tmp_path, files, ogg=("pop", 0.2), m4a=("blues", 0.5))
    genrectl("label", str(files["mp3"]), "metal")
    before = {p: p.read_bytes() for p in files.values()}
    summary = json_of(genrectl("tags", "write", "--min-confidence", "0.6", "--json"))
    assert summary["written"] == 0 and summary["skip_reasons"] == {
        "your label differs": 1,
        "has another genre": 1,
        "unknown": 1,
        "below --min-confidence": 1,
    }
    assert {p: p.read_bytes() for p in files.values()} == before
    forced = json_of(genrectl("tags", "write", "--overwrite", "--genre", "jazz", "--json"))
    assert forced["written"] == 1 and read_field(files["flac"], "genre") == "Jazz"


def test_file_changed_since_ingest_is_left_alone(
    genrectl: Invoke, tmp_path: Path, files: dict[str, Path]
) -> None:
    library(tmp_path, files)
    os.utime(files["mp3"], ns=(1, 1))
    summary = json_of(genrectl("tags", "write", "--json"))
    assert summary["written"] == 3 and summary["skip_reasons"] == {"changed on disk": 1}
    assert read_field(files["mp3"], "genre") is None


def test_a_genre_goes_in_by_its_tree_name_and_a_synonym_already_there_stays(
    genrectl: Invoke, tmp_path: Path, files: dict[str, Path]
) -> None:
    write_field(files["flac"], "genre", "Hip-Hop")  # Last.fm's spelling of the same genre
    library(tmp_path, files, mp3=("hiphop", 0.9), flac=("hiphop", 0.9))
    summary = json_of(genrectl("tags", "write", "--json"))
    assert read_field(files["mp3"], "genre") == "Hip hop"  # GTZAN's class "hiphop"
    assert read_field(files["flac"], "genre") == "Hip-Hop"
    by_path = {Path(t["path"]).suffix: t["action"] for t in summary["tracks"]}
    assert by_path[".mp3"] == "write" and by_path[".flac"] == "unchanged"
