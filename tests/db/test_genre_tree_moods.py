"""Listing by the genre tree and by moods, energy and tempo, on SQLite and PostgreSQL: a
parent includes its subtree, the user's genres.toml applies at once, a mood is an index
range, and playlists store and honour mood rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text, update

from db.engine import get_engine, session_scope
from db.genretree import genre_tree
from db.listing import TrackFilter, count_labelled, labelled_tracks, track_page
from db.models import Playlist, Track, TrackMood
from db.moods import MoodRule, track_moods
from db.playlists import evaluate_playlist, known_genres, refresh_playlists, set_user_label
from genrectl.settings import Settings
from tests.cli.library import Song, add_model, add_songs

CLASSES = ["metal", "heavy metal", "rock", "punk", "jazz", "pop"]
SONGS = [
    Song("/lib/01.flac", "metal", 0.9, artist="a"),
    Song("/lib/02.flac", "heavy metal", 0.8, artist="b"),
    Song("/lib/03.flac", "rock", 0.7, artist="c"),
    Song("/lib/04.flac", "punk", 0.9, artist="d"),
    Song("/lib/05.flac", "jazz", 0.9, artist="e"),
    Song("/lib/06.flac", "pop", 0.9, artist="f"),
]
# path -> (tempo, energy, {mood: score})
AUDIO = {
    "/lib/01.flac": (150.0, 0.9, {"angry": 0.05, "happy": 0.001}),
    "/lib/02.flac": (170.0, 0.8, {"angry": 0.004, "happy": 0.03}),
    "/lib/03.flac": (120.0, 0.6, {"happy": 0.05}),
    "/lib/04.flac": (180.0, 0.95, {"happy": 0.002}),
    "/lib/05.flac": (110.0, 0.2, {"tender": 0.05, "happy": 0.02}),
    "/lib/06.flac": (125.0, 0.7, {"happy": 0.01}),
}


def _library(settings: Settings) -> dict[str, int]:
    ids = add_songs(settings, SONGS, model_id=add_model(settings, classes=CLASSES))
    with session_scope(settings) as session:
        for path, (tempo, energy, moods) in AUDIO.items():
            session.execute(
                update(Track).where(Track.id == ids[path]).values(tempo_bpm=tempo, energy=energy)
            )
            session.add_all(
                TrackMood(track_id=ids[path], mood=m, score=s) for m, s in moods.items()
            )
    return ids


def _paths(settings: Settings, rule: TrackFilter) -> list[str]:
    with session_scope(settings) as session:
        found = [t.path for t in labelled_tracks(session, rule)]
        assert count_labelled(session, rule) == len(found)
        # A page in path order (the per-row test when a rule selects many) agrees.
        assert [t.path for t in track_page(session, rule, limit=50)] == sorted(found)
    return sorted(found)


def test_a_parent_genre_includes_its_subtree(db_settings: Settings) -> None:
    _library(db_settings)
    rock = _paths(db_settings, TrackFilter(genres=("Rock",)))
    assert rock == ["/lib/01.flac", "/lib/02.flac", "/lib/03.flac", "/lib/04.flac"]
    assert _paths(db_settings, TrackFilter(genres=("METAL",))) == ["/lib/01.flac", "/lib/02.flac"]
    assert _paths(db_settings, TrackFilter(genres=("heavy metal",))) == ["/lib/02.flac"]
    with session_scope(db_settings) as session:
        (track,) = labelled_tracks(session, TrackFilter(genres=("heavy metal",)))
    assert (track.genre, track.canonical_genre) == ("heavy metal", "Heavy metal")
    assert track.genre_parents == ("Metal", "Rock")
    assert track.to_dict()["canonical_genre"] == "Heavy metal"


def test_the_users_genre_tree_applies_at_once(db_settings: Settings) -> None:
    ids = _library(db_settings)
    Path(db_settings.home).mkdir(parents=True, exist_ok=True)  # PostgreSQL: no SQLite file there
    path = Path(db_settings.home) / "genres.toml"
    path.write_text('[genres.Metal]\nparent = ""\n', encoding="utf-8")
    assert _paths(db_settings, TrackFilter(genres=("Rock",))) == ["/lib/03.flac", "/lib/04.flac"]
    # The user's own label is a raw class too.
    with session_scope(db_settings) as session:
        track = session.get(Track, ids["/lib/05.flac"])
        assert track is not None
        set_user_label(session, track, "Nu metal")
    path.write_text('[genres."Nu metal"]\nparent = "Metal"\n', encoding="utf-8")
    metal = _paths(db_settings, TrackFilter(genres=("metal",)))
    assert metal == ["/lib/01.flac", "/lib/02.flac", "/lib/05.flac"]
    with session_scope(db_settings) as session:
        assert "rock" in known_genres(session) and "nu metal" in known_genres(session)
        tree = {n["name"]: n for n in genre_tree(session)}
    assert tree["Rock"]["tracks"] == 5 and tree["Rock"]["own"] == 1
    (metal_node,) = [n for n in tree["Rock"]["children"] if n["name"] == "Metal"]
    assert metal_node["tracks"] == 3


def test_moods_energy_and_tempo_select_by_index_ranges(db_settings: Settings) -> None:
    ids = _library(db_settings)
    # happy's threshold is 0.019: tracks 02, 03, 05.
    assert _paths(db_settings, TrackFilter(moods=("happy",))) == [
        "/lib/02.flac",
        "/lib/03.flac",
        "/lib/05.flac",
    ]
    either = _paths(db_settings, TrackFilter(moods=("angry", "tender")))
    assert either == ["/lib/01.flac", "/lib/05.flac"]
    assert _paths(db_settings, TrackFilter(genres=("rock",), moods=("happy",))) == [
        "/lib/02.flac",
        "/lib/03.flac",
    ]
    assert _paths(db_settings, TrackFilter(min_energy=0.85)) == ["/lib/01.flac", "/lib/04.flac"]
    assert _paths(db_settings, TrackFilter(tempo=(115, 130))) == ["/lib/03.flac", "/lib/06.flac"]
    with session_scope(db_settings) as session:
        assert track_moods(session, ids["/lib/05.flac"]) == ["tender", "happy"]
        assert track_moods(session, ids["/lib/06.flac"]) == []


def test_a_playlist_stores_its_mood_rule_and_refresh_honours_it(db_settings: Settings) -> None:
    ids = _library(db_settings)
    rule = MoodRule(moods=("happy",), min_energy=0.5)
    with session_scope(db_settings) as session:
        session.add(Playlist(name="up", genres=["rock"], mood_rule=rule.to_dict()))
        session.flush()
        (change,) = refresh_playlists(session, ["up"])
        assert change.total == 2
    with session_scope(db_settings) as session:
        session.add(TrackMood(track_id=ids["/lib/04.flac"], mood="party", score=0.5))
        session.execute(
            update(TrackMood)
            .where(TrackMood.track_id == ids["/lib/04.flac"], TrackMood.mood == "happy")
            .values(score=0.3)
        )
    with session_scope(db_settings) as session:
        (change,) = refresh_playlists(session, ["up"])
        playlist = session.query(Playlist).one()
        assert [t.path for t in evaluate_playlist(session, playlist)] == [
            "/lib/04.flac",
            "/lib/02.flac",
            "/lib/03.flac",
        ]
        assert change.added == [ids["/lib/04.flac"]]
        assert MoodRule.from_dict(playlist.mood_rule) == rule


def test_sqlite_reads_the_mood_and_prediction_indexes(tmp_path: Path) -> None:
    from db.migrate import upgrade

    settings = Settings.from_env({"GENRECTL_HOME": str(tmp_path / "home")})
    upgrade(settings)
    _library(settings)
    from db.listing import _labels_query, expand_genres
    from db.registry import promoted_model

    with session_scope(settings) as session:
        model = promoted_model(session)
        rule = expand_genres(session, TrackFilter(genres=("Rock",), moods=("happy",)))
        query = _labels_query(model, rule)
        sql = str(query.compile(get_engine(settings), compile_kwargs={"literal_binds": True}))
    with get_engine(settings).connect() as connection:
        plan = " ".join(str(row) for row in connection.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    assert "ix_predictions_model_genre_confidence" in plan
    assert "ix_track_moods_mood_score" in plan


@pytest.mark.parametrize("mood", ["happy", "angry"])
def test_mood_rule_round_trips(mood: str) -> None:
    rule = MoodRule(moods=(mood,), tempo=(100.0, 130.0))
    assert MoodRule.from_dict(rule.to_dict()) == rule
    assert rule.summary() == f"{mood}; 100-130 BPM"
    assert MoodRule.from_dict(None) == MoodRule() and not MoodRule()
