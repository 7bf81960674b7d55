from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import update

from cli.m3u import safe_filename
from db.engine import session_scope
from db.models import Prediction
from tests.cli.conftest import Invoke, json_of
from tests.cli.library import Song, home_settings, seed_library

SONGS = [
    Song(
        "/music/Miles Davis/So What.flac", "jazz", 0.92, "Miles Davis", "So What", duration_s=562.4
    ),
    Song("/music/Miles Davis/Blue in Green.flac", "jazz", 0.55, "Miles Davis", "Blue in Green"),
    Song("/music/Miles Davis/Freddie.flac", "jazz", 0.81, "Miles Davis", "Freddie Freeloader"),
    Song("/music/Coltrane/Naima.mp3", "jazz", 0.74, "John Coltrane", "Naima"),
    Song("/music/B.B. King/Thrill.mp3", "blues", 0.66, "B.B. King", "The Thrill Is Gone"),
    Song("/music/Slayer/Raining.mp3", "metal", 0.97, "Slayer", "Raining Blood"),
    Song("/music/misc/untitled.mp3", "jazz", 0.2),  # below the threshold: unknown
]


@pytest.fixture
def library(tmp_path: Path) -> dict[str, int]:
    return seed_library(tmp_path, SONGS)[1]


def titles(genrectl: Invoke, name: str) -> list[str]:
    return [t["title"] for t in json_of(genrectl("playlist", "show", name, "--json"))["tracks"]]


def test_rule_selects_genres_above_confidence_in_order(
    genrectl: Invoke, library: dict[str, int]
) -> None:
    created = json_of(
        genrectl(
            "playlist", "create", "Jazz", "--genre", "jazz", "--genre", "Blues",
            "--min-confidence", "0.6", "--json",
        )
    )  # fmt: skip
    assert created["tracks"] == 4 and created["genres"] == ["jazz", "blues"]
    assert titles(genrectl, "Jazz") == [
        "So What",
        "Freddie Freeloader",
        "Naima",
        "The Thrill Is Gone",
    ]
    genrectl(
        "playlist", "create", "by-title", "--genre", "jazz", "--order", "title", "--limit", "2"
    )
    assert titles(genrectl, "by-title") == ["Blue in Green", "Freddie Freeloader"]
    listed = {p["name"]: p for p in json_of(genrectl("playlist", "list", "--json"))}
    assert listed["by-title"]["tracks"] == 2 and listed["Jazz"]["tracks"] == 4
    assert "confidence >= 60%" in listed["Jazz"]["rule"]


def test_max_per_artist_and_seeded_random_order_are_stable(
    genrectl: Invoke, library: dict[str, int]
) -> None:
    genrectl("playlist", "create", "capped", "--genre", "jazz", "--max-per-artist", "1")
    assert titles(genrectl, "capped") == ["So What", "Naima"]
    genrectl("playlist", "create", "mix", "--genre", "jazz", "--order", "random", "--seed", "7")
    first = titles(genrectl, "mix")
    assert titles(genrectl, "mix") == first and len(first) == 4
    genrectl("playlist", "create", "mix", "--genre", "jazz", "--order", "random", "--seed", "8",
             "--replace")  # fmt: skip
    assert sorted(map(str, titles(genrectl, "mix"))) == sorted(map(str, first))
    drawn = json_of(genrectl("playlist", "create", "auto", "--genre", "jazz", "--order", "random",
                             "--json"))  # fmt: skip
    assert isinstance(drawn["seed"], int)


def test_playlist_follows_labels_and_refresh_reports_changes(
    genrectl: Invoke, tmp_path: Path, library: dict[str, int]
) -> None:
    genrectl("playlist", "create", "blues", "--genre", "blues")
    assert titles(genrectl, "blues") == ["The Thrill Is Gone"]
    labelled = json_of(genrectl("label", "Naima.mp3", "blues", "--json"))
    assert labelled["playlists"] == [{"name": "blues", "tracks": 2, "added": 1, "removed": 0}]
    assert titles(genrectl, "blues") == ["Naima", "The Thrill Is Gone"]  # yours counts as 100%
    # A new model's labels (as relabel writes them) change the playlist without a command.
    settings = home_settings(tmp_path)
    with session_scope(settings) as session:
        session.execute(
            update(Prediction)
            .where(Prediction.track_id == library["/music/B.B. King/Thrill.mp3"])
            .values(genre="jazz")
        )
    assert titles(genrectl, "blues") == ["Naima"]
    refreshed = json_of(genrectl("playlist", "refresh", "--json"))
    assert refreshed == [{"name": "blues", "tracks": 1, "added": 0, "removed": 1}]
    assert json_of(genrectl("playlist", "refresh", "blues", "--json"))[0]["removed"] == 0


def test_mistakes_get_helpful_errors(genrectl: Invoke, library: dict[str, int]) -> None:
    typo = genrectl("playlist", "create", "x", "--genre", "jaz", expect=2)
    assert "no model or label knows genre 'jaz'; did you mean jazz?" in typo.output
    genrectl("playlist", "create", "x", "--genre", "jazz")
    assert "add --replace" in genrectl("playlist", "create", "x", "--genre", "pop", expect=1).output
    seed = genrectl("playlist", "create", "y", "--genre", "pop", "--seed", "3", expect=2)
    assert "--seed only applies to --order random" in seed.output
    genrectl("playlist", "delete", "x")
    missing = genrectl("playlist", "show", "x", expect=3)
    assert "no playlist named 'x': run `genrectl playlist list`" in missing.output
    assert "give NAME with -o FILE, or --all DIR" in genrectl("playlist", "export", expect=2).output


def test_export_writes_extm3u_with_absolute_paths(
    genrectl: Invoke, tmp_path: Path, library: dict[str, int]
) -> None:
    genrectl("playlist", "create", "Jazz", "--genre", "jazz", "--min-confidence", "0.8")
    out = tmp_path / "lists" / "jazz.m3u8"
    genrectl("playlist", "export", "Jazz", "-o", str(out))
    assert out.read_text(encoding="utf-8") == (
        "#EXTM3U\n#PLAYLIST:Jazz\n"
        "#EXTINF:562,Miles Davis - So What\n/music/Miles Davis/So What.flac\n"
        "#EXTINF:30,Miles Davis - Freddie Freeloader\n/music/Miles Davis/Freddie.flac\n"
    )


def test_export_relative_paths_with_unicode(genrectl: Invoke, tmp_path: Path) -> None:
    root = tmp_path / "Music"
    songs = [
        Song(str(root / "Björk" / "Jóga.flac"), "pop", 0.9, "Björk", "Jóga"),
        Song(str(root / "日本" / "#1 夜.mp3"), "pop", 0.8, None, None, duration_s=None),
        Song(str(tmp_path / "elsewhere" / "x.mp3"), "pop", 0.7, "X", "Ex"),
    ]
    seed_library(tmp_path, songs)
    genrectl("playlist", "create", "Pop ☕", "--genre", "pop")
    out = root / "Playlists" / "pop.m3u8"
    genrectl("playlist", "export", "Pop ☕", "-o", str(out), "--relative-to", str(out.parent))
    lines = out.read_bytes().decode("utf-8").splitlines()
    assert lines == [
        "#EXTM3U",
        "#PLAYLIST:Pop ☕",
        "#EXTINF:30,Björk - Jóga",
        "../Björk/Jóga.flac",
        "#EXTINF:-1,#1 夜",
        "../日本/#1 夜.mp3",
        "#EXTINF:30,X - Ex",
        "../../elsewhere/x.mp3",
    ]
    for line in lines[3::2]:  # every path resolves, from the playlist's folder, to the file
        assert os.path.normpath(out.parent / line) in {s.path for s in songs}
    # Relative to the file's own folder, "#1 夜.mp3" would read as a comment: "./" keeps it.
    genrectl("playlist", "export", "Pop ☕", "-o", str(tmp_path / "a.m3u8"), "--relative-to",
             str(root / "日本"))  # fmt: skip
    assert "\n./#1 夜.mp3\n" in (tmp_path / "a.m3u8").read_text(encoding="utf-8")


def test_export_all_keeps_every_name_inside_the_folder(
    genrectl: Invoke, tmp_path: Path, library: dict[str, int]
) -> None:
    hostile = ["../../escape", "a/b\\c", "..", "CON", "nul.txt", " .hidden", "Jazz", "jazz"]
    for name in hostile:
        genrectl("playlist", "create", name, "--genre", "jazz")
    target = tmp_path / "export" / "lists"
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    written = json_of(genrectl("playlist", "export", "--all", str(target), "--json"))
    after = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    assert after == {target / Path(w["path"]).name for w in written}
    assert all(p.parent == target for p in after)
    names = sorted(p.name for p in after)
    assert names == sorted(
        [
            "_.._escape.m3u8", "a_b_c.m3u8", "playlist.m3u8", "_CON.m3u8", "_nul.txt.m3u8",
            "hidden.m3u8", "Jazz.m3u8", "jazz (2).m3u8",
            "genre-jazz.m3u8", "genre-blues.m3u8", "genre-metal.m3u8",
        ]
    )  # fmt: skip
    assert "/music/Slayer/Raining.mp3" in (target / "genre-metal.m3u8").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../etc/passwd", "_etc_passwd"),
        ("a\x00b", "a_b"),
        ("\u202egnp.exe", "_gnp.exe"),
        ("LPT1", "_LPT1"),
        ("", "playlist"),
        ("é" * 300, "é" * 100),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe
