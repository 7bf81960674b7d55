"""`playlist create --like` on real files ingested for real with the starter model: the
same tune in other formats comes first, rules hold, refresh follows new tracks, and a seed
that is gone or has no vector is named."""

from __future__ import annotations

from pathlib import Path

import mutagen
import pytest
from sqlalchemy import delete, func, select

from db.engine import session_scope
from db.models import Track, TrackStatus, TrackVector
from tests.audio_fixtures import FORMATS, noise, song, tone, write_audio
from tests.cli.conftest import Invoke, json_of
from tests.cli.library import home_settings

SECONDS = 12.0
# name -> (format, signal, artist tag): the tune of seed 0 in three formats, two other tunes,
# and two signals that are not music.
FILES = {
    "seed.flac": ("flac", "tune0", "Ann"),
    "twin.mp3": ("mp3", "tune0", "Ann"),
    "twin.ogg": ("ogg_vorbis", "tune0", "Bob"),
    "other1.flac": ("flac", "tune1", "Bob"),
    "other2.flac": ("flac", "tune2", "Cy"),
    "noise.flac": ("flac", "noise", "Cy"),
    "tone.flac": ("flac", "tone", "Cy"),
}


def render_file(path: Path, format_name: str, signal: str, artist: str | None) -> Path:
    fmt = FORMATS[format_name]
    kwargs = {"seconds": SECONDS, "sample_rate": fmt.sample_rate, "channels": fmt.channels}
    if signal.startswith("tune"):
        audio = song(**kwargs, seed=int(signal[4:]))
    else:
        audio = {"noise": noise, "tone": tone}[signal](**kwargs)
    write_audio(path, audio, sample_rate=fmt.sample_rate, fmt=fmt)
    if artist:
        tagged = mutagen.File(path, easy=True)
        if tagged.tags is None:
            tagged.add_tags()
        tagged["artist"] = artist
        tagged.save()
    return path


@pytest.fixture
def music(tmp_path: Path, genrectl: Invoke) -> Path:
    folder = tmp_path / "music"
    for name, (format_name, signal, artist) in FILES.items():
        render_file(folder / name, format_name, signal, artist)
    genrectl("ingest", str(folder))
    return folder


def names(genrectl: Invoke, playlist: str) -> list[str]:
    shown = json_of(genrectl("playlist", "show", playlist, "--json"))
    return [Path(t["path"]).name for t in shown["tracks"]]


def test_like_puts_the_same_tune_first_and_keeps_the_rules(
    genrectl: Invoke, music: Path, tmp_path: Path
) -> None:
    with session_scope(home_settings(tmp_path)) as session:
        ok = select(func.count()).where(Track.status == TrackStatus.OK).select_from(Track)
        assert session.scalar(select(func.count()).select_from(TrackVector)) == len(FILES)
        assert session.scalar(ok) == len(FILES)
    created = json_of(genrectl("playlist", "create", "like", "--like", "seed.flac", "--json"))
    assert created["order"] == "similarity" and created["limit"] == 50
    assert created["rule"].startswith("like track ")
    found = names(genrectl, "like")
    assert "seed.flac" not in found and len(found) == len(FILES) - 1
    assert set(found[:2]) == {"twin.mp3", "twin.ogg"}, found
    genrectl("playlist", "create", "one-each", "--like", "seed.flac", "--max-per-artist", "1")
    capped = names(genrectl, "one-each")
    artists = [FILES[n][2] for n in capped]
    assert len(artists) == len(set(artists)) == 3 and capped[0] == found[0], capped
    genre = json_of(genrectl("tracks", "list", "--json"))
    twin_genre = next(t["genre"] for t in genre if t["path"].endswith(found[0]))
    genrectl("playlist", "create", "no-twin", "--like", "seed.flac", "--exclude-genre", twin_genre)
    assert found[0] not in names(genrectl, "no-twin")


def test_refresh_brings_new_similar_tracks_and_a_lost_seed_is_named(
    genrectl: Invoke, music: Path, tmp_path: Path
) -> None:
    genrectl("playlist", "create", "like", "--like", "seed.flac", "--limit", "3")
    genrectl("playlist", "create", "metal", "--genre", "metal", "--genre", "rock")
    render_file(music / "twin.aiff", "aiff", "tune0", None)
    genrectl("ingest", str(music))
    assert "like: 3 tracks (+1 -1)" in genrectl("playlist", "refresh", "like").stdout
    assert names(genrectl, "like")[0] == "twin.aiff"  # the same audio as the seed

    (music / "seed.flac").unlink()
    genrectl("ingest", str(music))  # the seed is missing: its stored vector still seeds
    shown = genrectl("playlist", "show", "like")
    assert "is missing from disk" in shown.stdout and "3 tracks" in shown.stdout

    with session_scope(home_settings(tmp_path)) as session:
        seed = session.scalar(select(Track.id).where(Track.path.endswith("/seed.flac")))
        session.execute(delete(Track).where(Track.id == seed))
    failed = genrectl("playlist", "show", "like", expect=3)
    assert f"seed track {seed} is no longer in the library" in failed.output
    assert "--replace" in failed.output
    refreshed = genrectl("playlist", "refresh").stdout
    assert "like: playlist 'like': its seed" in refreshed and "metal:" in refreshed


def test_bad_seeds_and_flags_get_one_line_each(
    genrectl: Invoke, music: Path, tmp_path: Path
) -> None:
    assert "no track 'nope.flac'" in genrectl("playlist", "create", "x", "--like", "nope.flac",
                                               expect=2).output  # fmt: skip
    ordered = genrectl("playlist", "create", "x", "--like", "seed.flac", "--order", "title",
                       expect=2)  # fmt: skip
    assert "ordered by similarity" in ordered.output
    assert "or --like TRACK" in genrectl("playlist", "create", "x", expect=2).output
    assert "--exclude-genre" in genrectl("playlist", "create", "x", "--like", "seed.flac",
                                         "--exclude-genre", "nosuch", expect=2).output  # fmt: skip
    with session_scope(home_settings(tmp_path)) as session:
        session.execute(delete(TrackVector))
    missing = genrectl("playlist", "create", "x", "--like", "seed.flac", expect=2)
    assert "no similarity vector yet: run `genrectl relabel`" in missing.output
    genrectl("relabel")  # libraries labelled before this feature get their vectors so
    assert len(names(genrectl, json_of(genrectl("playlist", "create", "x", "--like",
                                                "seed.flac", "--json"))["name"])) == 6  # fmt: skip
