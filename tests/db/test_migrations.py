"""Migrations: the migrated schema is the models' schema, and data of an older schema
survives the upgrade (on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from db.engine import dispose_engines, get_engine
from db.migrate import downgrade_to, upgrade, upgrade_to
from db.models import Base
from genrectl.settings import Settings
from tests.services import create_database, drop_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def empty_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    env = {"GENRECTL_HOME": str(tmp_path / "home")}
    name = None
    if request.param == "postgresql":
        name, url = create_database()
        env["GENRECTL_DATABASE_URL"] = url
    yield Settings.from_env(env)
    dispose_engines()
    if name:
        drop_database(name)


def test_the_migrated_schema_is_the_models_schema(empty_settings: Settings) -> None:
    upgrade(empty_settings)
    with get_engine(empty_settings).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def _prediction_indexes(settings: Settings) -> set[str]:
    with get_engine(settings).connect() as connection:
        return {i["name"] or "" for i in inspect(connection).get_indexes("predictions")}


def test_the_library_scale_indexes_undo_and_redo(empty_settings: Settings) -> None:
    upgrade(empty_settings)
    assert "ix_predictions_model_genre_confidence" in _prediction_indexes(empty_settings)
    downgrade_to(empty_settings, "b31674a81d3d")  # 0006_pipeline
    assert "ix_predictions_model_genre_confidence" not in _prediction_indexes(empty_settings)
    upgrade(empty_settings)
    with get_engine(empty_settings).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_segments_of_the_mel_era_get_their_shards_feature_version(
    empty_settings: Settings,
) -> None:
    upgrade_to(empty_settings, "fcb5069e4e8b")  # before feature sets
    with get_engine(empty_settings).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tracks (id, path, size, mtime_ns, status, feature_version, added_at,"
                " updated_at) VALUES (1, '/m/a.flac', 1, 1, 'ok', 'melv', :t, :t)"
            ),
            {"t": "2026-11-30 00:00:00+00:00"},
        )
        connection.execute(
            text(
                "INSERT INTO shards (id, path, sha256, feature_version, n_segments, created_at)"
                " VALUES (1, '/d/s.h5', :sha, 'melv', 2, :t)"
            ),
            {"sha": "0" * 64, "t": "2026-11-30 00:00:00+00:00"},
        )
        connection.execute(
            text(
                "INSERT INTO segments (track_id, shard_id, row, index, start_s) VALUES"
                " (1, 1, 0, 0, 0.0), (1, 1, 1, 1, 6.0)".replace("index", '"index"')
            )
        )
        connection.execute(
            text(
                "INSERT INTO batches (id, kind, status, roots, total, done, failed, unchanged,"
                " missing, created_at) VALUES (1, 'ingest', 'done', '[]', 0, 0, 0, 0, 0, :t)"
            ),
            {"t": "2026-11-30 00:00:00+00:00"},
        )
    upgrade(empty_settings)
    with get_engine(empty_settings).connect() as connection:
        versions = connection.execute(text("SELECT feature_version FROM segments")).scalars()
        assert list(versions) == ["melv", "melv"]
        feature_sets = connection.execute(text("SELECT feature_sets FROM batches")).scalar()
        assert feature_sets in ("[]", [])
