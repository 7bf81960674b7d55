from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from db.engine import session_scope
from db.listing import TrackFilter, labelled_tracks
from db.models import Playlist, Track, UserLabel
from db.playlists import (
    cap_per_artist,
    evaluate_playlist,
    find_track,
    model_genres,
    order_tracks,
    refresh_playlists,
    set_user_label,
)
from genrectl.errors import NotFoundError
from genrectl.settings import Settings
from tests.cli.library import Song, add_model, add_songs

SONGS = [
    Song("/lib/a/1.flac", "jazz", 0.9, "Ann", "Zebra"),
    Song("/lib/a/2.flac", "jazz", 0.8, "ann", "Apple"),  # same artist, other case
    Song("/lib/b/3.flac", "jazz", 0.7, "Bob", "Mango"),
    Song("/lib/b/4.flac", "blues", 0.6, None, "Kiwi"),
    Song("/lib/b/5.flac", "jazz", 0.1, None, None),  # unknown
]


@pytest.fixture
def ids(db_settings: Settings) -> list[int]:
    model_id = add_model(db_settings)
    by_path = add_songs(db_settings, SONGS, model_id=model_id)
    return [by_path[s.path] for s in SONGS]


def test_user_label_wins_in_filters_and_counts_as_certain(
    db_settings: Settings, ids: list[int]
) -> None:
    with session_scope(db_settings) as session:
        set_user_label(session, session.get(Track, ids[4]), "Blues")
        set_user_label(session, session.get(Track, ids[0]), "blues")
        blues = labelled_tracks(session, TrackFilter(genres=["BLUES"], min_confidence=0.95))
        assert [(t.id, t.source, t.model_genre) for t in blues] == [
            (ids[0], "user", "jazz"),
            (ids[4], "user", "unknown"),
        ]
        assert labelled_tracks(session, TrackFilter(unknown=True)) == []
        assert set_user_label(session, session.get(Track, ids[0]), None) == "blues"
        assert labelled_tracks(session, TrackFilter(ids=[ids[0]]))[0].genre == "jazz"
        assert model_genres(session)[ids[4]] == "unknown"


def test_one_label_per_track(db_settings: Settings, ids: list[int]) -> None:
    with pytest.raises(IntegrityError), session_scope(db_settings) as session:
        session.add_all(
            [UserLabel(track_id=ids[0], genre="a"), UserLabel(track_id=ids[0], genre="b")]
        )
        session.flush()


def test_orders_and_artist_cap(db_settings: Settings, ids: list[int]) -> None:
    with session_scope(db_settings) as session:
        tracks = labelled_tracks(session, TrackFilter(genres=["jazz", "blues"]))
    titles = [t.title for t in order_tracks(tracks, "title")]
    assert titles == ["Apple", "Kiwi", "Mango", "Zebra"]
    assert [t.artist for t in order_tracks(tracks, "artist")] == ["ann", "Ann", "Bob", None]
    capped = cap_per_artist(order_tracks(tracks, "confidence"), 1)
    assert [t.title for t in capped] == ["Zebra", "Mango", "Kiwi"]
    shuffled = order_tracks(tracks, "random", seed=3)
    assert shuffled == order_tracks(list(reversed(tracks)), "random", seed=3)
    fewer = order_tracks(tracks[1:], "random", seed=3)
    assert fewer == [t for t in shuffled if t in fewer]  # the others keep their order


def test_refresh_records_what_changed(db_settings: Settings, ids: list[int]) -> None:
    with session_scope(db_settings) as session:
        session.add(Playlist(name="j", genres=["jazz"], max_tracks=2, order_by="confidence"))
        session.flush()
        (first,) = refresh_playlists(session)
        assert (first.total, first.added, first.removed) == (2, ids[:2], [])
        set_user_label(session, session.get(Track, ids[2]), "metal")
        set_user_label(session, session.get(Track, ids[3]), "jazz")
        playlist = session.query(Playlist).one()
        assert [t.id for t in evaluate_playlist(session, playlist)] == [ids[3], ids[0]]
        (second,) = refresh_playlists(session, ["j"])
        assert (second.added, second.removed) == ([ids[3]], [ids[1]])


def test_find_track_by_id_path_or_unique_tail(db_settings: Settings, ids: list[int]) -> None:
    with session_scope(db_settings) as session:
        assert find_track(session, str(ids[2])).path == "/lib/b/3.flac"
        assert find_track(session, "/lib/a/1.flac").id == ids[0]
        assert find_track(session, "b/4.flac").id == ids[3]
        with pytest.raises(NotFoundError, match="no track"):
            find_track(session, "9.flac")
