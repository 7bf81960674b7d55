"""The SQL behind "more like this" on SQLite and PostgreSQL: vectors stored and replaced,
read back by key, removed with their track, and a --like playlist's walk through its rules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sqlalchemy import delete, func, select

from db.engine import session_scope
from db.models import Playlist, Track, TrackVector
from db.playlists import evaluate_playlist, refresh_playlists
from db.registry import starter_metadata
from db.similar import SeedGoneError, library_vectors, seed_key
from genrectl.errors import GenreError
from genrectl.settings import Settings
from tests.cli.library import Song, add_model, add_songs
from worker.features.sets import model_feature_sets
from worker.inference.vectors import store_track_vectors, vector_dim, vector_key

NAMES = itertools.count()
SETS = model_feature_sets(starter_metadata()["feature_params"])  # type: ignore[index]
# Similarity to the seed (the first) falls with the position; two artists, three genres.
SONGS = [
    Song("/lib/seed.flac", "metal", 0.9, "Slayer", "Seed"),
    Song("/lib/1.flac", "metal", 0.9, "Slayer", "One"),
    Song("/lib/2.flac", "rock", 0.8, "Slayer", "Two"),
    Song("/lib/3.flac", "metal", 0.7, "Anthrax", "Three"),
    Song("/lib/4.flac", "pop", 0.9, "Anthrax", "Four"),
    Song("/lib/5.flac", "metal", 0.2, None, "Five"),  # unknown: below the threshold
    Song("/lib/6.flac", "rock", 0.9, None, "Six"),
]


def vectors(n: int, dim: int) -> np.ndarray:
    """Unit vectors whose cosine to the first falls with the index."""
    angles = np.linspace(0, np.pi / 2, n)
    out = np.zeros((n, dim), np.float32)
    out[:, 0], out[:, 1] = np.cos(angles), np.sin(angles)
    return out


@pytest.fixture
def ids(db_settings: Settings) -> list[int]:
    model_id = add_model(db_settings, classes=["metal", "pop", "rock"])
    by_path = add_songs(db_settings, SONGS, model_id=model_id)
    found = [by_path[s.path] for s in SONGS]
    with session_scope(db_settings) as session:
        made = vectors(len(found), vector_dim(SETS))
        # Written in reverse, so that the rank is not the order of insertion.
        store_track_vectors(
            session, SETS, {t: made[i] for i, t in reversed(list(enumerate(found)))}
        )
    return found


def like(session: object, ids: list[int], **rule: object) -> Playlist:
    playlist = Playlist(
        name=f"like {next(NAMES)}",
        genres=rule.pop("genres", []),
        order_by="similarity",
        like_track_ids=[ids[0]],
        max_tracks=rule.pop("max_tracks", None),
        **rule,
    )
    session.add(playlist)  # type: ignore[attr-defined]
    session.flush()  # type: ignore[attr-defined]
    return playlist


def titles(session: object, playlist: Playlist) -> list[str | None]:
    return [t.title for t in evaluate_playlist(session, playlist)]  # type: ignore[arg-type]


def test_vectors_are_stored_once_per_track_and_key_and_replaced(
    db_settings: Settings, ids: list[int]
) -> None:
    with session_scope(db_settings) as session:
        key = vector_key(SETS)
        found, matrix = library_vectors(session, key)
        assert sorted(found.tolist()) == sorted(ids) and matrix.shape == (7, vector_dim(SETS))
        assert matrix.dtype == np.float16
        first = matrix[found.tolist().index(ids[0])]
        assert abs(float(first[0]) - 1.0) < 1e-3
        replaced = np.zeros(vector_dim(SETS), np.float32)
        replaced[2] = 1.0
        store_track_vectors(session, SETS, {ids[0]: replaced})
        found, matrix = library_vectors(session, key)
        assert len(found) == 7
        assert matrix[found.tolist().index(ids[0])][2] == 1.0
        assert seed_key(session, [ids[0], ids[1]]) == key
        assert library_vectors(session, "other:key")[0].size == 0


def test_like_orders_by_similarity_without_the_seed_under_the_rules(
    db_settings: Settings, ids: list[int]
) -> None:
    with session_scope(db_settings) as session:
        assert titles(session, like(session, ids)) == ["One", "Two", "Three", "Four", "Five", "Six"]
    with session_scope(db_settings) as session:
        playlist = like(session, ids, genres=["metal", "rock"], max_per_artist=1, max_tracks=2)
        assert titles(session, playlist) == ["One", "Three"]  # Two: Slayer's second
    with session_scope(db_settings) as session:
        playlist = like(session, ids, exclude_genres=["ROCK", "unknown"], min_confidence=0.75)
        assert titles(session, playlist) == ["Four"]  # Rock leaves out its subgenre metal too


def test_a_deleted_seed_is_named_and_other_playlists_still_refresh(
    db_settings: Settings, ids: list[int]
) -> None:
    with session_scope(db_settings) as session:
        like(session, ids)
        session.add(Playlist(name="metal", genres=["metal"]))
    with session_scope(db_settings) as session:
        session.execute(delete(Track).where(Track.id == ids[0]))
    with session_scope(db_settings) as session:
        # The seed's vector went with its track (the foreign key's cascade).
        gone = select(func.count()).select_from(TrackVector).where(TrackVector.track_id == ids[0])
        assert session.scalar(gone) == 0
        playlist = session.scalar(select(Playlist).where(Playlist.like_track_ids.is_not(None)))
        with pytest.raises(SeedGoneError, match=f"seed track {ids[0]} is no longer"):
            evaluate_playlist(session, playlist)
        changes = {c.name: c for c in refresh_playlists(session)}
        problem = changes[playlist.name].problem
        assert problem and "--replace" in problem
        assert changes["metal"].problem is None and changes["metal"].total == 2


def test_a_seed_without_a_vector_says_to_relabel(db_settings: Settings, ids: list[int]) -> None:
    with session_scope(db_settings) as session:
        session.execute(delete(TrackVector).where(TrackVector.track_id == ids[1]))
        with pytest.raises(GenreError, match="no similarity vector yet: run `genrectl relabel`"):
            seed_key(session, [ids[0], ids[1]])


def test_the_vectors_are_cached_by_the_database_state(
    db_settings: Settings, ids: list[int]
) -> None:
    folder = db_settings.data_dir / "cache" / "vectors"
    key = vector_key(SETS)
    with session_scope(db_settings) as session:
        first, _ = library_vectors(session, key)  # read from the database, then cached
    files = sorted(p.name for p in folder.glob("*.npy"))
    assert len(files) == 2 and first.dtype == np.int64
    with session_scope(db_settings) as session:
        found, matrix = library_vectors(session, key)
        assert matrix.dtype == np.float32  # the cache file's (the database holds float16)
        assert sorted(found.tolist()) == sorted(ids)
        changed = np.zeros(vector_dim(SETS), np.float32)
        changed[3] = 1.0
        store_track_vectors(session, SETS, {ids[2]: changed})  # same count, a new id
    with session_scope(db_settings) as session:
        found, matrix = library_vectors(session, key)
        assert matrix.dtype == np.float16  # the state changed: read from the database again
        assert matrix[found.tolist().index(ids[2])][3] == 1.0
        session.execute(delete(Track).where(Track.id == ids[6]))
    with session_scope(db_settings) as session:
        # A delete keeps the state: the cache still holds the vector, the walk skips it.
        assert ids[6] in library_vectors(session, key)[0]
        playlist = like(session, ids)
        assert "Six" not in titles(session, playlist) and len(titles(session, playlist)) == 5
    assert len(files) == 2 and sorted(p.name for p in folder.glob("*.npy")) != files


def test_exclude_genre_applies_to_a_playlist_without_seeds(
    db_settings: Settings, ids: list[int]
) -> None:
    with session_scope(db_settings) as session:
        # Rock holds metal in the genre tree: Rock without metal is its other tracks.
        playlist = Playlist(name="mixed", genres=["rock"], exclude_genres=["metal"])
        session.add(playlist)
        session.flush()
        assert titles(session, playlist) == ["Six", "Two"]  # by confidence
