"""How a featurize task fails: a message given back by a worker that died on it goes one
track at a time (a file that killed MAX_ATTEMPTS workers fails alone); a bug fails the
chunk's items with a reason; a transient error leaves them queued for a retry."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

import worker.features.featurize
from db.engine import dispose_engines, session_scope
from db.migrate import upgrade
from db.models import Job, Track
from genrectl.settings import Settings
from scheduler.batches import IngestPlan, plan_ingest
from scheduler.scan import scan
from tests.scheduler.cluster import write_library
from worker.features.featurize import MAX_ATTEMPTS, featurize_redelivered
from worker.features.mel import FeatureParams
from worker.tasks import featurize_chunk_task


def _planned(tmp_path: Path, n: int) -> tuple[Settings, IngestPlan, list[Path]]:
    settings = Settings.from_env({"GENRECTL_HOME": str(tmp_path / "home")})
    upgrade(settings)
    paths = write_library(tmp_path / "music", n, seconds=7.0)
    with session_scope(settings) as session:
        plan = plan_ingest(
            session,
            scan([tmp_path / "music"]),
            roots=[str(tmp_path / "music")],
            feature_sets={FeatureParams().version: FeatureParams().to_dict()},
        )
    return settings, plan, paths


def test_a_file_that_killed_the_worker_too_often_fails_alone(tmp_path: Path) -> None:
    settings, plan, paths = _planned(tmp_path, 3)
    try:
        with session_scope(settings) as session:
            culprit = session.scalar(select(Track.id).where(Track.path == str(paths[1])))
            worn = update(Job).where(Job.track_id == culprit).values(attempts=MAX_ATTEMPTS)
            session.execute(worn)
        result = featurize_redelivered(settings, batch_id=plan.batch_id, track_ids=plan.track_ids)
        assert (result.done, result.failed) == (2, 1)
        with session_scope(settings) as session:
            rows = dict(session.execute(select(Track.path, Track.error)).all())
            shards = {s.shard_id for t in session.scalars(select(Track)) for s in t.segments}
        assert rows[str(paths[1])] == "a worker process died on this file 3 times (decoder crash?)"
        assert rows[str(paths[0])] is None and rows[str(paths[2])] is None
        assert len(shards) == 2  # one transaction, and one shard, per track
    finally:
        dispose_engines()


def _jobs(settings: Settings) -> list[tuple[str, str | None]]:
    with session_scope(settings) as session:
        return [(s, e) for s, e in session.execute(select(Job.status, Job.error)).all()]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError("boom"), [("failed", "internal error: RuntimeError: boom")] * 2),
        (OperationalError("COMMIT", {}, Exception("gone")), [("queued", None)] * 2),
    ],
)
def test_a_bug_fails_the_chunk_a_transient_error_leaves_it_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, expected: list[object]
) -> None:
    settings, plan, _paths = _planned(tmp_path, 2)
    monkeypatch.setenv("GENRECTL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GENRECTL_DATABASE_URL", raising=False)

    def fails(*_args: object, **_kwargs: object) -> None:
        raise error

    monkeypatch.setattr(worker.features.featurize, "featurize_chunk", fails)
    try:
        with pytest.raises(type(error)):
            featurize_chunk_task(plan.batch_id, plan.track_ids)  # called directly: no retry
        assert _jobs(settings) == expected
    finally:
        dispose_engines()
