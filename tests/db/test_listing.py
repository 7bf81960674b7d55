"""Pages, counts and playlists read through the index ranges of migration 0007: the same
tracks, in the same order, as the whole listing sorted here; and on SQLite a rule's plan
reads the index."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from db.engine import get_engine, session_scope
from db.listing import (
    SORT_KEYS,
    SQL_SORTS,
    TrackFilter,
    _labels_query,
    count_labelled,
    labelled_tracks,
    track_page,
)
from db.models import Playlist, Track, TrackStatus
from db.playlists import evaluate_playlist, set_user_label
from db.registry import promoted_model
from genrectl.settings import Settings
from tests.cli.library import GENRES, Song, add_model, add_songs, home_settings

# 40 tracks: genres in turn, confidences spread (some below the threshold: unknown), one
# failed, a few the user labelled.
SONGS = [
    Song(
        f"/lib/{i % 4}/{i:02d}.flac",
        GENRES[i % len(GENRES)],
        round(0.2 + (i * 37 % 40) / 50, 3),
        artist=f"artist {i % 6}",
        status=TrackStatus.FAILED if i == 13 else TrackStatus.OK,
    )
    for i in range(40)
]
USER_LABELS = {3: "jazz", 8: "pop", 21: "jazz"}
RULES = [
    TrackFilter(genres=("jazz",)),
    TrackFilter(genres=("jazz", "Blues"), min_confidence=0.6),
    TrackFilter(min_confidence=0.7),
    TrackFilter(unknown=True),
    TrackFilter(genres=("pop",), statuses=(TrackStatus.OK,)),
    TrackFilter(statuses=(TrackStatus.FAILED,)),
]


def _library(settings: Settings) -> None:
    ids = add_songs(settings, SONGS, model_id=add_model(settings))
    with session_scope(settings) as session:
        for i, genre in USER_LABELS.items():
            set_user_label(session, session.get(Track, ids[SONGS[i].path]), genre)


@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_pages_and_counts_are_the_whole_listings(db_settings: Settings, rule: TrackFilter) -> None:
    _library(db_settings)
    with session_scope(db_settings) as session:
        everything = labelled_tracks(session, rule)
        assert everything and count_labelled(session, rule) == len(everything)
        model = promoted_model(session)
        per_row = session.scalars(_labels_query(model, rule, per_row=True)).all()
        assert {t.id for t in per_row} == {t.id for t in everything}
        for sort in SORT_KEYS:
            for reverse in (False, True):
                ordered = sorted(everything, key=SORT_KEYS[sort], reverse=reverse)
                page = track_page(session, rule, sort=sort, reverse=reverse, limit=5, offset=2)
                if sort in SQL_SORTS or len({SORT_KEYS[sort](t) for t in everything}) == len(
                    everything
                ):  # ties in the other sorts may fall either way
                    assert page == ordered[2:7], (sort, reverse)


def test_a_playlist_cut_by_the_database_is_the_cut_of_its_order(db_settings: Settings) -> None:
    _library(db_settings)
    with session_scope(db_settings) as session:
        session.add(Playlist(name="j", genres=["jazz", "blues"], max_tracks=4))
        session.flush()
        cut = evaluate_playlist(
            session, session.scalars(select(Playlist).filter_by(name="j")).one()
        )
        rule = TrackFilter(genres=("jazz", "blues"), statuses=(TrackStatus.OK,))
        whole = sorted(labelled_tracks(session, rule), key=SORT_KEYS["confidence"])
        assert cut == whole[:4] and cut[0].source == "user"


def test_a_rules_plan_reads_the_model_genre_confidence_index(tmp_path: Path) -> None:
    settings = home_settings(tmp_path)
    _library(settings)
    with session_scope(settings) as session:
        rule = TrackFilter(genres=("jazz",), min_confidence=0.6)
        sql = _labels_query(promoted_model(session), rule).compile(
            get_engine(settings), compile_kwargs={"literal_binds": True}
        )
    with get_engine(settings).connect() as connection:
        plan = " | ".join(r[3] for r in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "ix_predictions_model_genre_confidence (model_id=? AND genre=? AND confidence>?)" in plan


@pytest.mark.parametrize(
    "rule",
    [
        TrackFilter(genres=("jazz", "blues"), statuses=(TrackStatus.OK,)),
        TrackFilter(genres=(GENRES[13 % len(GENRES)],), statuses=(TrackStatus.OK,)),  # a failed one
        TrackFilter(genres=("pop",), min_confidence=0.5),
    ],
    ids=repr,
)
def test_every_cut_by_confidence_is_the_cut_of_the_whole_order(
    db_settings: Settings, rule: TrackFilter
) -> None:
    """The most confident N read only the genre's top predictions (``_confidence_floor``),
    and fall back to sorting the whole genre when the rule's other tests leave too few."""
    _library(db_settings)
    with session_scope(db_settings) as session:
        whole = sorted(labelled_tracks(session, rule), key=SORT_KEYS["confidence"])
        for limit in range(1, 13):
            for offset in range(0, 6):
                cut = labelled_tracks(session, rule, sort="confidence", limit=limit, offset=offset)
                assert cut == whole[offset : offset + limit], (limit, offset)
