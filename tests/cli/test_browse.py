from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from db.engine import session_scope
from db.models import Prediction
from tests.cli.conftest import Invoke, json_of
from tests.cli.library import Song, add_featurized, add_model, home_settings, seed_library

SONGS = [
    Song("/m/a.flac", "jazz", 0.9, "Zappa", "Peaches", "Hot Rats", genre_tag="Rock"),
    Song("/m/b.mp3", "jazz", 0.5, "Adderley", "Autumn Leaves", genre_tag="Jazz"),
    Song("/m/c.ogg", "blues", 0.7, "King", "Thrill"),
    Song("/m/d.mp3", "pop", 0.2),  # unknown
    Song("/m/e.mp3", "pop", 0.0, status="failed"),
]


@pytest.fixture
def library(tmp_path: Path) -> dict[str, int]:
    return seed_library(tmp_path, SONGS)[1]


def listed(genrectl: Invoke, *args: str) -> list[dict]:
    return json_of(genrectl("tracks", "list", "--json", *args))


def test_tracks_list_filters_sorts_and_shows_tags_beside_labels(
    genrectl: Invoke, library: dict[str, int]
) -> None:
    rows = listed(genrectl, "--genre", "jazz")
    assert [(r["title"], r["genre"], r["confidence"], r["genre_tag"]) for r in rows] == [
        ("Peaches", "jazz", 0.9, "Rock"),
        ("Autumn Leaves", "jazz", 0.5, "Jazz"),
    ]
    assert rows[0]["album"] == "Hot Rats" and rows[0]["label_source"] == "model"
    assert [r["path"] for r in listed(genrectl, "--min-confidence", "0.6")] == [
        "/m/a.flac",
        "/m/c.ogg",
    ]
    assert [r["path"] for r in listed(genrectl, "--unknown")] == ["/m/d.mp3"]
    assert [r["path"] for r in listed(genrectl, "--failed")] == ["/m/e.mp3"]
    by_artist = [r["artist"] for r in listed(genrectl, "--sort", "artist", "--limit", "3")]
    assert by_artist == ["Adderley", "King", "Zappa"]
    least_sure = listed(genrectl, "--sort", "confidence", "--reverse", "--status", "ok")
    assert [r["path"] for r in least_sure][:2] == ["/m/d.mp3", "/m/b.mp3"]
    table = genrectl("tracks", "list", "--genre", "jazz").stdout
    assert "Peaches" in table and "Rock" in table and "90%" in table and "2 tracks" in table
    assert "Jazz" in table and " jazz " not in table  # the genre tree's name, not the class


def test_your_label_wins_everywhere(genrectl: Invoke, library: dict[str, int]) -> None:
    genrectl("playlist", "create", "blues", "--genre", "blues", "--min-confidence", "0.8")
    assert json_of(genrectl("playlist", "show", "blues", "--json"))["tracks"] == []
    by_tail = json_of(genrectl("label", "a.flac", "Blues", "--json"))
    assert by_tail["id"] == library["/m/a.flac"] and by_tail["genre"] == "blues"
    genrectl("label", "/m/d.mp3", "blues")  # by path; the model said unknown
    rows = {r["path"]: r for r in listed(genrectl)}
    assert rows["/m/a.flac"]["genre"] == "blues" and rows["/m/a.flac"]["model_genre"] == "jazz"
    assert rows["/m/a.flac"]["label_source"] == "user"
    assert [r["path"] for r in listed(genrectl, "--genre", "blues")] == [
        "/m/a.flac",
        "/m/c.ogg",
        "/m/d.mp3",
    ]
    assert [r["path"] for r in listed(genrectl, "--unknown")] == []
    counts = {g["genre"]: g for g in json_of(genrectl("genres", "--json"))["genres"]}
    assert counts["blues"] == {"genre": "blues", "tracks": 3, "user_labelled": 2, "share": 0.75}
    assert "unknown" not in counts
    shown = json_of(genrectl("playlist", "show", "blues", "--json"))["tracks"]
    assert [t["path"] for t in shown] == ["/m/a.flac", "/m/d.mp3"]  # below 0.8, but yours
    genrectl("label", str(library["/m/a.flac"]), "--clear")
    assert listed(genrectl, "--genre", "jazz")[0]["label_source"] == "model"


def test_label_errors_name_the_problem(genrectl: Invoke, library: dict[str, int]) -> None:
    assert "no track 'nope.mp3'" in genrectl("label", "nope.mp3", "jazz", expect=3).output
    assert "use --clear" in genrectl("label", "1", "unknown", expect=2).output
    assert "give a GENRE, or --clear" in genrectl("label", "1", expect=2).output
    note = genrectl("label", "1", "Synth Wave").stdout
    assert "your label 'synth wave'" in note and "no model knows 'synth wave' yet" in note


def test_ambiguous_tail_lists_the_candidates(genrectl: Invoke, tmp_path: Path) -> None:
    seed_library(tmp_path, [Song("/x/a/s.mp3", "jazz", 0.9), Song("/x/b/s.mp3", "jazz", 0.9)])
    result = genrectl("show", "s.mp3", "--no-segments", expect=3)
    assert "matches several tracks" in result.output and "/x/b/s.mp3" in result.output


def test_genres_draws_a_bar_chart(genrectl: Invoke, library: dict[str, int]) -> None:
    out = genrectl("genres").stdout
    jazz = next(line for line in out.splitlines() if " jazz " in line)
    blues = next(line for line in out.splitlines() if " blues " in line)
    assert jazz.count("█") == 30 and blues.count("█") == 15
    report = json_of(genrectl("genres", "--json"))
    assert (report["total"], report["unlabelled"], report["model"]) == (4, 0, "test-model")
    assert [g["genre"] for g in report["genres"]] == ["jazz", "blues", "unknown"]


def test_genres_without_a_model_says_what_to_do(genrectl: Invoke, tmp_path: Path) -> None:
    add_model(home_settings(tmp_path), promoted=False)  # a registry with none promoted
    assert "no model is promoted: run `genrectl models list`" in genrectl("genres").stdout


def test_show_computes_segment_predictions_with_the_promoted_model(
    genrectl: Invoke, tmp_path: Path, library: dict[str, int]
) -> None:
    settings = home_settings(tmp_path)
    add_featurized(settings, [library["/m/a.flac"], library["/m/b.mp3"]], segments=3)
    detail = json_of(genrectl("show", "/m/a.flac", "--json"))
    assert [s["index"] for s in detail["segments"]] == [0, 1, 2]
    assert [s["start_s"] for s in detail["segments"]] == [0.0, 6.0, 12.0]
    for segment in detail["segments"]:
        assert segment["genre"] in ("blues", "jazz", "metal") and len(segment["top3"]) == 3
        assert segment["probability"] == segment["top3"][0][1]
    assert detail["title"] == "Peaches" and detail["codec"] is None
    text = genrectl("show", str(library["/m/a.flac"])).stdout
    assert "segments (6 s each)" in text and "0:12" in text


def test_relabel_reports_how_many_tracks_changed_genre(
    genrectl: Invoke, tmp_path: Path, library: dict[str, int]
) -> None:
    settings = home_settings(tmp_path)
    ids = [library["/m/a.flac"], library["/m/b.mp3"], library["/m/c.ogg"]]
    add_featurized(settings, ids)  # promotes "tiny"; its labels are not written yet
    genrectl("label", "/m/c.ogg", "metal")
    report = json_of(genrectl("relabel", "--json"))
    assert report["model"] == "tiny" and report["labelled"] == 3
    with session_scope(settings) as session:
        now = dict(
            session.execute(
                select(Prediction.track_id, Prediction.genre)
                .join(Prediction.model)
                .where(Prediction.model.has(name="tiny"))
            ).all()
        )
    before = {ids[0]: "jazz", ids[1]: "jazz", ids[2]: "blues"}
    assert report["changed_genre"] == sum(before[t] != now[t] for t in ids)
    assert report["user_labels_kept"] == 1
    mine = {r["path"]: r["label_source"] for r in listed(genrectl, "--genre", "metal")}
    assert mine["/m/c.ogg"] == "user"  # still yours
    assert json_of(genrectl("relabel", "--json"))["changed_genre"] == 0
