"""``tags write`` then ``tags undo`` on real files: every file's bytes come back exactly."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import mutagen
import pytest
from mutagen.flac import Picture
from mutagen.id3 import APIC, ID3, TCON, TIT2
from mutagen.mp4 import MP4Cover
from sqlalchemy import select

from db.engine import session_scope
from db.models import Prediction, TagChange, Track, TrackMood
from genrectl.settings import Settings
from tests.cli.conftest import Invoke, json_of
from tests.cli.library import Song, seed_library
from tests.conftest import RenderAudio
from worker.audio.tagwrite import read_values

FORMATS = {"mp3": "mp3", "flac": "flac", "ogg": "ogg_vorbis", "opus": "opus", "m4a": "m4a_aac"}
STATES: dict[str, list[str]] = {"none": [], "single": ["Rock"], "multi": ["Rock", "Pop"]}
# blues, at 0.025 in the seeded predictions, passes its own calibrated threshold.
METRICS = {"class_thresholds": {"blues": 0.02}}
COVER = bytes(range(256)) * 160  # 40 KB: a rewrite moves it, the undo must put it back


def _tag(path: Path, genres: list[str], *, v23: bool = False) -> None:
    """Tags as another tagger left them: a title, the genres, a cover on the multi-value ones."""
    suffix = path.suffix
    if suffix == ".mp3":
        tags = ID3()
        tags.add(TIT2(encoding=3, text=["A song"]))
        if genres:
            tags.add(TCON(encoding=3, text=genres))
            tags.add(APIC(encoding=3, mime="image/png", type=3, desc="", data=COVER))
        tags.save(path, v2_version=3 if v23 else 4)
        return
    audio = mutagen.File(path)
    if suffix == ".m4a":
        audio["\xa9nam"] = ["A song"]
        if genres:
            audio["\xa9gen"] = genres
            audio["covr"] = [MP4Cover(COVER, imageformat=MP4Cover.FORMAT_PNG)]
    else:
        audio["title"] = ["A song"]
        if genres:
            audio["genre"] = genres
        if genres and suffix == ".flac":
            picture = Picture()
            picture.type, picture.mime, picture.data = 3, "image/png", COVER
            audio.add_picture(picture)
    audio.save()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tagged(tmp_path: Path, render_audio: RenderAudio) -> dict[str, Path]:
    """Real files of five formats, each with no genre, one genre and two genres, plus
    ID3v2.3 MP3s, in one library folder."""
    folder = tmp_path / "music"
    folder.mkdir()
    files = {}
    for suffix, name in FORMATS.items():
        for state, genres in STATES.items():
            path = folder / f"{state}.{suffix}"
            shutil.copyfile(render_audio(name, seconds=2.0), path)
            _tag(path, genres)
            files[f"{state}.{suffix}"] = path
    for state in ("single", "multi"):
        path = folder / f"{state}-v23.mp3"
        shutil.copyfile(render_audio("mp3", seconds=2.0), path)
        _tag(path, ["Rock"] if state == "single" else ["Rock/Pop"], v23=True)
        files[path.name] = path
    return files


def _library(tmp_path: Path, files: dict[str, Path]) -> Settings:
    songs = [Song(str(p), "jazz", 0.9, title=name) for name, p in files.items()]
    settings, _ = seed_library(tmp_path, songs, as_featurized=True, metrics=METRICS)
    return settings


def _state(files: dict[str, Path]) -> dict[str, tuple[str, int]]:
    return {name: (_sha256(p), p.stat().st_mtime_ns) for name, p in files.items()}


def test_write_then_undo_gives_every_file_back_byte_for_byte(
    genrectl: Invoke, tmp_path: Path, tagged: dict[str, Path]
) -> None:
    settings = _library(tmp_path, tagged)
    before = _state(tagged)
    summary = json_of(genrectl("tags", "write", "--overwrite", "--max-genres", "2", "--json"))
    assert (summary["written"], summary["failed"]) == (len(tagged), 0)
    assert summary["batch"] == 1
    for name, path in tagged.items():
        assert read_values(path, "genre") == ["Jazz", "Blues"], name
        assert _sha256(path) != before[name][0], name
    assert ID3(tagged["multi.mp3"])["TCON"].text == ["Jazz", "Blues"]  # v2.4: NUL-separated
    assert ID3(tagged["multi-v23.mp3"])["TCON"].text == ["Jazz/Blues"]  # v2.3: "/"
    assert mutagen.File(tagged["none.flac"])["genre"] == ["Jazz", "Blues"]  # GENRE= twice
    assert mutagen.File(tagged["multi.opus"])["genre"] == ["Jazz", "Blues"]
    assert mutagen.File(tagged["single.m4a"]).tags["\xa9gen"] == ["Jazz", "Blues"]

    undone = json_of(genrectl("tags", "undo", "--json"))
    assert (undone["batch"], undone["restored"], undone["refused"]) == (1, len(tagged), 0)
    assert _state(tagged) == before  # every byte, and the mtime, as before the write
    history = json_of(genrectl("tags", "history", "--json"))
    assert [(b["id"], b["written"], b["undone"], b["state"]) for b in history] == [
        (1, len(tagged), len(tagged), "undone")
    ]
    with session_scope(settings) as session:
        for track in session.scalars(select(Track)):
            info = os.stat(track.path)
            assert (track.size, track.mtime_ns) == (info.st_size, info.st_mtime_ns)
            assert track.content_hash == _sha256(Path(track.path))
    report = json_of(genrectl("ingest", str(tmp_path / "music"), "--json"))
    assert (report["unchanged"], report["changed"]) == (len(tagged), 0)
    nothing = genrectl("tags", "undo", expect=1)
    assert "nothing to undo" in nothing.output


def test_the_journal_keeps_old_and_new_values_absent_apart_from_empty(
    genrectl: Invoke, tmp_path: Path, render_audio: RenderAudio
) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    files = {}
    for name, genres in (("absent", None), ("empty", [""]), ("full", ["Rock"])):
        files[name] = folder / f"{name}.flac"
        shutil.copyfile(render_audio("flac", seconds=2.0), files[name])
        if genres is not None:
            audio = mutagen.File(files[name])
            audio["genre"] = genres
            audio.save()
    settings = _library(tmp_path, files)
    before = _state(files)
    summary = json_of(genrectl("tags", "write", "--only-empty", "--json"))
    assert summary["written"] == 2 and summary["skip_reasons"] == {"genre not empty": 1}
    with session_scope(settings) as session:
        changes = {Path(c.path).stem: c for c in session.scalars(select(TagChange))}
        assert changes["absent"].old_values == {"genre": None}
        assert changes["empty"].old_values == {"genre": [""]}
        assert changes["empty"].new_values == ["Jazz"]
        assert changes["empty"].sha256_before == before["empty"][0]
        assert changes["empty"].sha256_after == _sha256(files["empty"])
        assert changes["empty"].size_after == files["empty"].stat().st_size
    genrectl("tags", "undo")
    assert _state(files) == before
    assert mutagen.File(files["empty"])["genre"] == [""]
    assert "genre" not in mutagen.File(files["absent"])


def test_a_file_changed_since_is_refused_and_the_others_go_on(
    genrectl: Invoke, tmp_path: Path, tagged: dict[str, Path]
) -> None:
    files = {k: tagged[k] for k in ("none.mp3", "none.flac", "none.ogg")}
    _library(tmp_path, files)
    before = _state(files)
    genrectl("tags", "write")
    audio = mutagen.File(files["none.flac"])
    audio["title"] = ["Retitled by hand"]
    audio.save()
    result = genrectl("tags", "undo", "--json", expect=4)
    undone = json_of(result)
    assert (undone["restored"], undone["refused"]) == (2, 1)
    refused = [f for f in undone["files"] if f["action"] == "refused"]
    assert refused[0]["path"] == str(files["none.flac"])
    assert "changed since tags write" in refused[0]["reason"]
    assert _state(files)["none.mp3"] == before["none.mp3"]
    assert _state(files)["none.ogg"] == before["none.ogg"]
    history = json_of(genrectl("tags", "history", "--json"))
    assert history[0]["state"] == "partly undone" and history[0]["undone"] == 2
    text = genrectl("tags", "history").stdout
    assert "partly undone (2 of 3)" in text

    forced = json_of(genrectl("tags", "undo", "--force", "--json"))
    assert (forced["batch"], forced["forced"], forced["restored"]) == (1, 1, 0)
    audio = mutagen.File(files["none.flac"])
    assert "genre" not in audio and audio["title"] == ["Retitled by hand"]
    assert json_of(genrectl("tags", "history", "--json"))[0]["state"] == "undone"


def test_batches_are_undone_latest_first(
    genrectl: Invoke, tmp_path: Path, tagged: dict[str, Path]
) -> None:
    files = {k: tagged[k] for k in ("single.m4a", "multi.ogg")}
    _library(tmp_path, files)
    before = _state(files)
    assert json_of(genrectl("tags", "write", "--overwrite", "--json"))["batch"] == 1
    assert json_of(genrectl("tags", "write", "--field", "grouping", "--json"))["batch"] == 2
    early = json_of(genrectl("tags", "undo", "--batch", "1", "--json", expect=4))
    assert early["refused"] == 2
    assert all("written again by batch 2" in f["reason"] for f in early["files"])
    assert json_of(genrectl("tags", "undo", "--json"))["batch"] == 2
    assert json_of(genrectl("tags", "undo", "--json"))["batch"] == 1
    assert _state(files) == before
    assert "batch 1 is already undone" in genrectl("tags", "undo", "--batch", "1", expect=1).output
    assert "no tags write batch 9" in genrectl("tags", "undo", "--batch", "9", expect=3).output


def test_the_dry_runs_show_old_and_new_and_change_nothing(
    genrectl: Invoke, tmp_path: Path, tagged: dict[str, Path]
) -> None:
    files = {k: tagged[k] for k in ("none.opus", "single.flac")}
    _library(tmp_path, files)
    before = _state(files)
    plan = json_of(genrectl("tags", "write", "--dry-run", "--overwrite", "--json"))
    olds = {Path(t["path"]).name: (t["current"], t["value"]) for t in plan["tracks"]}
    assert olds == {"none.opus": (None, "Jazz"), "single.flac": ("Rock", "Jazz")}
    text = genrectl("-v", "tags", "write", "--dry-run", "--overwrite").stdout
    assert "old \u2192 new" in text and "(none) \u2192 Jazz" in text and "Rock \u2192 Jazz" in text
    assert _state(files) == before and plan["batch"] is None
    assert "no `tags write` has changed a file yet" in genrectl("tags", "history").stdout

    genrectl("tags", "write", "--overwrite")
    written = _state(files)
    preview = json_of(genrectl("tags", "undo", "--dry-run", "--json"))
    assert preview["restored"] == 2 and _state(files) == written
    assert {(f["now"], f["restores"]) for f in preview["files"]} == {
        ("Jazz", "(none)"),
        ("Jazz", "Rock"),
    }
    assert json_of(genrectl("tags", "history", "--json"))[0]["state"] == "written"


def test_only_empty_and_overwrite_do_not_go_together(
    genrectl: Invoke, tmp_path: Path, tagged: dict[str, Path]
) -> None:
    _library(tmp_path, {"none.mp3": tagged["none.mp3"]})
    result = genrectl("tags", "write", "--only-empty", "--overwrite", expect=2)
    assert "--only-empty never replaces a value" in result.output
    assert "4" in genrectl("tags", "write", "--max-genres", "4", expect=2).output


def test_without_calibrated_thresholds_the_unknown_threshold_decides(
    genrectl: Invoke, tmp_path: Path, tagged: dict[str, Path]
) -> None:
    files = {k: tagged[k] for k in ("none.mp3", "none.flac")}
    songs = [Song(str(p), "jazz", 0.9) for p in files.values()]
    settings, ids = seed_library(tmp_path, songs, as_featurized=True)  # no class_thresholds
    with session_scope(settings) as session:
        prediction = session.scalar(
            select(Prediction).where(Prediction.track_id == ids[str(files["none.flac"])])
        )
        assert prediction is not None
        # blues, classical, jazz, metal, pop: blues passes 0.35, pop does not.
        prediction.probabilities = [0.36, 0.0, 0.5, 0.0, 0.14]
    plan = json_of(genrectl("tags", "write", "--dry-run", "--max-genres", "3", "--json"))
    values = {Path(t["path"]).name: t["values"] for t in plan["tracks"]}
    assert values == {"none.mp3": ["Jazz"], "none.flac": ["Jazz", "Blues"]}


def test_moods_are_written_per_format_and_taken_back(
    genrectl: Invoke, tmp_path: Path, tagged: dict[str, Path]
) -> None:
    """``--field mood`` writes a track's moods (strongest first) where each format keeps a
    mood (TMOO, MOOD=, the iTunes MOOD atom), and undo gives the bytes back; ID3v2.3 has no
    mood frame and is refused, untouched."""
    settings = _library(tmp_path, tagged)
    with session_scope(settings) as session:
        for track in session.scalars(select(Track)):
            session.add_all(
                [
                    TrackMood(track_id=track.id, mood="sad", score=0.99),
                    TrackMood(track_id=track.id, mood="tender", score=0.999),
                    TrackMood(track_id=track.id, mood="happy", score=0.0),
                ]
            )
    before = _state(tagged)
    summary = json_of(
        genrectl("tags", "write", "--field", "mood", "--json", expect=4),
    )
    v23 = {name for name in tagged if name.endswith("-v23.mp3")}
    assert (summary["written"], summary["failed"]) == (len(tagged) - len(v23), len(v23))
    for name, path in tagged.items():
        expected = [] if name in v23 else ["sad", "tender"]
        assert sorted(read_values(path, "mood")) == expected, name
    assert sorted(ID3(tagged["none.mp3"])["TMOO"].text) == ["sad", "tender"]
    assert sorted(mutagen.File(tagged["none.flac"])["mood"]) == ["sad", "tender"]
    assert [
        bytes(v) for v in mutagen.File(tagged["none.m4a"]).tags["----:com.apple.iTunes:MOOD"]
    ] == [v.encode() for v in read_values(tagged["none.m4a"], "mood")]
    assert {_state({n: tagged[n]})[n] for n in v23} == {before[n] for n in v23}
    genrectl("tags", "undo", "--json")
    assert _state(tagged) == before
