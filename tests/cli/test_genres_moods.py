"""The genre tree and moods through the CLI on real files: ingest measures tempo and
energy and stores moods; `tracks list`, `show`, `genres tree` and playlists use them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from genrectl.moods import MOODS
from tests.cli.conftest import Invoke, json_of


def test_ingest_stores_tempo_energy_and_moods_that_listing_uses(
    genrectl: Invoke, tmp_path: Path, render_audio: Callable[..., Path]
) -> None:
    root = tmp_path / "music"
    root.mkdir()
    for fmt in ("mp3", "flac"):
        source = render_audio(fmt, seconds=20.0, signal="song")
        shutil.copy(source, root / source.name)
    genrectl("ingest", str(root))
    listed = json_of(genrectl("tracks", "list", "--json"))
    assert len(listed) == 2
    for track in listed:
        assert 116 <= track["tempo_bpm"] <= 124  # the tune is at 120 BPM
        assert 0 <= track["energy"] <= 1
        assert set(track["moods"]) == set(MOODS)
        assert track["canonical_genre"]  # the starter's class, named by the tree
    in_range = json_of(genrectl("tracks", "list", "--tempo", "110-130", "--json"))
    assert len(in_range) == 2
    assert json_of(genrectl("tracks", "list", "--tempo", "60-90", "--json")) == []
    shown = json_of(genrectl("show", listed[0]["path"], "--no-segments", "--json"))
    assert set(shown["moods"]) == set(MOODS) and shown["tempo_bpm"] == listed[0]["tempo_bpm"]
    text = genrectl("show", listed[0]["path"], "--no-segments").stdout
    assert "tempo" in text and "BPM" in text and "energy" in text

    tree = json_of(genrectl("genres", "tree", "--json"))
    assert sum(node["tracks"] for node in tree["genres"]) == 2
    assert tree["files"][0].endswith("taxonomy.toml")
    genre = listed[0]["canonical_genre"]
    parents = listed[0]["genre_parents"]
    top = parents[-1] if parents else genre
    assert json_of(genrectl("tracks", "list", "--genre", top, "--json"))

    created = json_of(
        genrectl(
            "playlist", "create", "energetic", "--min-energy", "0", "--tempo", "100-140", "--json"
        )
    )
    assert created["tracks"] == 2
    assert created["mood_rule"] == {"moods": [], "min_energy": 0.0, "tempo": [100.0, 140.0]}
    assert "energy >= 0; 100-140 BPM" in created["rule"]


def test_bad_mood_tempo_and_genre_file_are_one_line_errors(
    genrectl: Invoke, tmp_path: Path
) -> None:
    bad_mood = genrectl("tracks", "list", "--mood", "glad", expect=2)
    assert "unknown mood 'glad'; known: happy" in bad_mood.output
    bad_tempo = genrectl("tracks", "list", "--tempo", "fast", expect=2)
    assert "'fast' must be a tempo range in BPM such as 100-130" in bad_tempo.output
    no_rule = genrectl("playlist", "create", "empty", expect=2)
    assert "give at least one --genre, --mood, --min-energy or --tempo" in no_rule.output
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "genres.toml").write_text('[genres.Metal]\nparent = "Rokc"\n', encoding="utf-8")
    failed = genrectl("genres", "tree", expect=2)
    assert failed.output.strip() == (
        f"error: genres file '{home / 'genres.toml'}': genre 'Metal': parent 'Rokc' is not a genre"
    )
    plain = genrectl("tracks", "list", "--genre", "rock", expect=2)
    assert plain.output.count("\n") == 1
