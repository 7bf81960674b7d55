"""``genrectl gc``: the orphan shard of a commit that really failed (on PostgreSQL), and the
features of tracks deleted from the library; never a shard in use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from cli.main import cli
from db.engine import dispose_engines, get_engine, session_scope
from db.models import Segment, Shard, Track, TrackVector
from genrectl.settings import Settings
from tests.scheduler.cluster import write_library
from tests.services import create_database, drop_database

# Checked at COMMIT (a deferred constraint trigger): the commit itself fails, after the shard
# files were written and the rows inserted, as a commit that meets a full disk does.
FAIL_SHARD_COMMITS = """
CREATE FUNCTION refuse_shards() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER refuse_shards AFTER INSERT ON shards
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_shards();
"""


class Genrectl:
    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.runner = env, CliRunner(env=env)

    def __call__(self, *args: str, expect: int | None = 0) -> Result:
        result = self.runner.invoke(cli, list(args), catch_exceptions=False)
        assert expect is None or result.exit_code == expect, result.output
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)


@pytest.fixture
def sqlite_home(tmp_path: Path) -> Iterator[Genrectl]:
    env = {"GENRECTL_HOME": str(tmp_path / "home"), "GENRECTL_STARTER_MODEL": "0"}
    yield Genrectl({**env, "GENRECTL_WORKERS": "1", "GENRECTL_CHUNK_SIZE": "1"})
    dispose_engines()


@pytest.fixture
def postgres_home(tmp_path: Path) -> Iterator[Genrectl]:
    name, url = create_database()
    env = {"GENRECTL_HOME": str(tmp_path / "home"), "GENRECTL_DATABASE_URL": url}
    yield Genrectl({**env, "GENRECTL_STARTER_MODEL": "0", "GENRECTL_CHUNK_SIZE": "2"})
    dispose_engines()
    drop_database(name)


def _add_vectors(settings: Settings) -> set[int]:
    """A similarity vector for every track; returns their track ids."""
    with session_scope(settings) as session:
        ids = set(session.scalars(select(Track.id)))
        for track_id in ids:
            session.add(TrackVector(key="test", track_id=track_id, dim=2, vector=bytes(4)))
    return ids


def _track_id(settings: Settings, path: Path) -> int:
    with session_scope(settings) as session:
        found = session.scalar(select(Track.id).where(Track.path == str(path)))
    assert found is not None
    return found


def _files(settings: Settings) -> set[str]:
    return {str(p) for p in settings.shard_dir.glob("*.h5")}


def _referenced(settings: Settings) -> dict[str, str]:
    with session_scope(settings) as session:
        return dict(session.execute(select(Shard.path, Shard.sha256)).all())


def _assert_referenced_intact(settings: Settings, referenced: dict[str, str]) -> None:
    from worker.features.mel import FeatureParams
    from worker.features.shards import open_shard

    for path, sha in referenced.items():
        with open_shard(Path(path), params=FeatureParams(), sha256=sha) as reader:
            assert reader.n_segments > 0


@pytest.mark.services
@pytest.mark.slow
def test_gc_removes_the_orphan_of_a_failed_commit_and_nothing_referenced(
    postgres_home: Genrectl, tmp_path: Path
) -> None:
    genrectl, settings = postgres_home, postgres_home.settings
    write_library(tmp_path / "kept", 3, seconds=7.0)
    genrectl("ingest", str(tmp_path / "kept"))
    referenced = _referenced(settings)
    assert len(referenced) == 2 and set(referenced) == _files(settings)
    with get_engine(settings).begin() as connection:
        connection.exec_driver_sql(FAIL_SHARD_COMMITS)  # the commit of every new shard fails
    write_library(tmp_path / "lost", 2, seconds=7.0, first=10)
    genrectl("ingest", str(tmp_path / "lost"), expect=None)  # however the failure is reported
    with get_engine(settings).begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER refuse_shards ON shards")
    assert _referenced(settings) == referenced
    (orphan,) = _files(settings) - set(referenced)  # written, then its commit failed

    young = genrectl.json("gc", "--dry-run")  # an hour's grace by default: it may be committing
    assert young["orphan_files"] == [] and young["bytes"] == 0
    listed = genrectl.json("gc", "--dry-run", "--min-age", "0")
    assert [f["path"] for f in listed["orphan_files"]] == [orphan] and listed["bytes"] > 0
    assert listed["unused_shards"] == [] and Path(orphan).exists()
    text = genrectl("gc", "--dry-run", "--min-age", "0").stdout
    assert orphan in text and "Would free" in text and "nothing removed" in text

    removed = genrectl.json("gc", "--min-age", "0")
    assert [f["path"] for f in removed["orphan_files"]] == [orphan]
    assert not Path(orphan).exists() and _files(settings) == set(referenced)
    _assert_referenced_intact(settings, referenced)
    assert genrectl.json("gc", "--dry-run", "--min-age", "0")["bytes"] == 0


def test_gc_removes_the_features_of_tracks_deleted_from_the_library(
    sqlite_home: Genrectl, tmp_path: Path
) -> None:
    genrectl, settings = sqlite_home, sqlite_home.settings
    music = tmp_path / "music"
    gone, *kept = write_library(music, 3, seconds=7.0)
    genrectl("ingest", str(music))
    before = _referenced(settings)
    gone.unlink()
    genrectl("ingest", str(music))  # marks it missing
    vectors = _add_vectors(settings)  # as labelling by an encoder model writes them

    recent = genrectl.json("gc", "--dry-run", "--min-age", "0")  # missing for under 7 days
    assert recent["missing_tracks"] == [] and recent["unused_shards"] == []
    listed = genrectl.json("gc", "--dry-run", "--min-age", "0", "--missing-days", "0")
    assert (
        listed["missing_tracks"] == [str(gone)] and listed["missing_segments"] == 1
    )  # one 6 s segment
    assert listed["missing_vectors"] == 1
    (unused,) = listed["unused_shards"]  # chunks of one track: its shard held only it

    genrectl("gc", "--min-age", "0", "--missing-days", "0")
    assert not Path(unused["path"]).exists()
    after = _referenced(settings)
    assert set(after) == set(before) - {unused["path"]} == _files(settings)
    _assert_referenced_intact(settings, after)
    with session_scope(settings) as session:
        assert session.scalar(select(Segment.id).where(Segment.shard_id.is_(None))) is None
        assert len(session.scalars(select(Segment)).all()) == len(kept)
        left = set(session.scalars(select(TrackVector.track_id)))
    assert left == vectors - {_track_id(settings, gone)}
