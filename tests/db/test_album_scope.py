"""Album scope in the database: listings at album scope are ranges of their own index, an
album's recomputation reads only its tracks (by the album key index), and on SQLite and
PostgreSQL the recomputation upserts its albums."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from db.albums import refresh_albums, scoped_labels
from db.engine import get_engine, session_scope
from db.listing import TrackFilter, _labels_query, labelled_tracks
from db.models import Album, Model, Track
from db.registry import promoted_model
from genrectl.settings import Settings
from tests.cli.library import Song, add_model, add_songs, home_settings, prediction

# Two albums of three: one all jazz but a weak track; one of three genres (a compilation).
SONGS = [
    Song("/m/a/1.flac", "jazz", 0.9, album="A"),
    Song("/m/a/2.flac", "jazz", 0.8, album="A"),
    Song("/m/a/3.flac", "blues", 0.3, album="A"),  # unclear on its own
    Song("/m/b/1.flac", "jazz", 0.95, album="B"),
    Song("/m/b/2.flac", "metal", 0.95, album="B"),
    Song("/m/b/3.flac", "pop", 0.95, album="B"),
]


def _library(settings: Settings) -> dict[str, int]:
    ids = add_songs(settings, SONGS, model_id=add_model(settings))
    with session_scope(settings) as session:
        for song in SONGS:
            track = session.get(Track, ids[song.path])
            assert track is not None
            track.artist, track.album_key = "x", f"tag:x\x1f{song.album}"
    return ids


def test_albums_are_recomputed_and_upserted(db_settings: Settings) -> None:
    ids = _library(db_settings)
    for _ in range(2):  # the second run updates the same rows
        with session_scope(db_settings) as session:
            model = promoted_model(session)
            assert model is not None
            assert refresh_albums(session, model, list(ids.values()), threshold=0.35) == 2
    with session_scope(db_settings) as session:
        albums = {a.key[-1]: (a.genre, a.tracks) for a in session.scalars(select(Album))}
        assert albums == {"A": ("jazz", 3), "B": ("unknown", 3)}  # B: a third each, unclear
        scoped = scoped_labels(session, list(ids.values()), scope="album")
        assert scoped[ids["/m/a/3.flac"]].genre == "jazz"
        assert [scoped[ids[f"/m/b/{i}.flac"]].genre for i in (1, 2, 3)] == ["jazz", "metal", "pop"]
        listed = labelled_tracks(session, TrackFilter(genres=("jazz",), scope="album"))
        assert {t.path for t in listed} == {
            "/m/a/1.flac",
            "/m/a/2.flac",
            "/m/a/3.flac",
            "/m/b/1.flac",
        }
        by_track = labelled_tracks(session, TrackFilter(genres=("jazz",)))
        assert "/m/a/3.flac" not in {t.path for t in by_track}


def _plan(settings: Settings, sql: object) -> str:
    with get_engine(settings).connect() as connection:
        return " | ".join(r[3] for r in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))


def test_album_scope_reads_its_index_and_an_album_its_key(tmp_path: Path) -> None:
    settings = home_settings(tmp_path)
    _library(settings)
    with session_scope(settings) as session:
        model = session.scalar(select(Model))
        rule = TrackFilter(genres=("jazz",), min_confidence=0.6, scope="album")
        sql = _labels_query(model, rule).compile(
            get_engine(settings), compile_kwargs={"literal_binds": True}
        )
        album = (
            select(Track.id)
            .where(Track.album_key.in_(["tag:x\x1fA"]))
            .compile(get_engine(settings), compile_kwargs={"literal_binds": True})
        )
    assert (
        "ix_predictions_model_album_genre_confidence (model_id=? AND album_genre=? AND "
        "album_confidence>?)" in _plan(settings, sql)
    )
    assert "ix_tracks_album_key (album_key=?)" in _plan(settings, album)


def test_the_migration_gives_old_tracks_album_keys_and_old_predictions_their_own_label(
    db_settings: Settings,
) -> None:
    from sqlalchemy import text

    from db.migrate import downgrade_to, upgrade

    ids = add_songs(db_settings, [Song("/m/x/1.flac", "jazz", 0.9, album="Blue")], model_id=None)
    add_model(db_settings)
    with session_scope(db_settings) as session:
        model = promoted_model(session)
        assert model is not None
        session.add(prediction(ids["/m/x/1.flac"], model.id, "jazz", 0.9))
    downgrade_to(db_settings, "97e1fb93f9d0")  # before albums
    upgrade(db_settings)
    with get_engine(db_settings).connect() as connection:
        key = connection.execute(text("SELECT album_key FROM tracks")).scalar()
        row = connection.execute(text("SELECT album_genre, album_confidence FROM predictions"))
        assert key == "tag:\x1fblue"  # no artist tag: the album alone
        assert tuple(row.one()) == ("jazz", 0.9)
