"""A message given back by a worker that died on it: one track at a time, and a file that
killed the worker MAX_ATTEMPTS times fails alone instead of crashing workers forever."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update

from db.engine import dispose_engines, session_scope
from db.migrate import upgrade
from db.models import Job, Track
from genrectl.settings import Settings
from scheduler.batches import plan_ingest
from scheduler.scan import scan
from tests.scheduler.cluster import write_library
from worker.features import FeatureParams
from worker.featurize import MAX_ATTEMPTS, featurize_redelivered


def test_a_file_that_killed_the_worker_too_often_fails_alone(tmp_path: Path) -> None:
    settings = Settings.from_env({"GENRECTL_HOME": str(tmp_path / "home")})
    upgrade(settings)
    paths = write_library(tmp_path / "music", 3, seconds=7.0)
    try:
        with session_scope(settings) as session:
            plan = plan_ingest(
                session,
                scan([tmp_path / "music"]),
                roots=[str(tmp_path / "music")],
                feature_version=FeatureParams().version,
            )
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
