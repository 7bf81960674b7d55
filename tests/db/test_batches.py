from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import func, select

from db.engine import session_scope
from db.models import Batch, BatchStatus, Job, Segment, Shard, Track, TrackStatus
from genrectl.settings import Settings
from scheduler.batches import count_jobs, plan_ingest, refresh_batch
from scheduler.scan import scan


def _library(root: Path, n: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = [root / f"t{i}.wav" for i in range(n)]
    for p in paths:
        p.write_bytes(b"RIFF")
    return paths


def _plan(settings: Settings, root: Path, **kw: object):  # type: ignore[no-untyped-def]
    with session_scope(settings) as session:
        return plan_ingest(session, scan([root]), roots=[str(root)], feature_sets={"v1": {}}, **kw)


def test_first_plan_queues_every_track_and_second_plan_adds_no_rows(
    db_settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "lib"
    _library(root, 3)
    first = _plan(db_settings, root)
    assert (first.new, len(first.track_ids)) == (3, 3)
    second = _plan(db_settings, root)  # nothing featurized yet: still pending, queued again
    with session_scope(db_settings) as session:
        assert session.scalar(select(func.count()).select_from(Track)) == 3
        assert count_jobs(session, second.batch_id).total == 3


def test_unchanged_ok_tracks_are_not_queued_and_changed_ones_are(
    db_settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "lib"
    paths = _library(root, 2)
    _plan(db_settings, root)
    _featurize_all(db_settings, "v1")
    os.utime(paths[0], ns=(1, 1))
    plan = _plan(db_settings, root)
    assert (plan.unchanged, plan.changed, len(plan.track_ids)) == (1, 1, 1)


def _featurize_all(settings: Settings, version: str) -> None:
    """Mark every track OK with one row of ``version`` in a (file-less) shard."""
    with session_scope(settings) as session:
        shard = Shard(
            path=f"/shards/{version}.h5", sha256="0" * 64, feature_version=version, n_segments=1
        )
        session.add(shard)
        session.flush()
        for track in session.scalars(select(Track)):
            track.status = TrackStatus.OK
            session.add(
                Segment(
                    track_id=track.id,
                    shard_id=shard.id,
                    feature_version=version,
                    row=0,
                    index=0,
                    start_s=0.0,
                )
            )


def test_a_new_models_features_queue_unchanged_tracks_but_keep_them_labelled(
    db_settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "lib"
    _library(root, 2)
    _plan(db_settings, root)
    _featurize_all(db_settings, "v1")
    with session_scope(db_settings) as session:
        plan = plan_ingest(
            session,
            scan([root]),
            roots=[str(root)],
            feature_sets={"v1": {}, "v2": {"kind": "encoder"}},
        )
    assert (plan.features, plan.unchanged, len(plan.track_ids)) == (2, 0, 2)
    with session_scope(db_settings) as session:
        assert {t.status for t in session.scalars(select(Track))} == {TrackStatus.OK}
        batch = session.get(Batch, plan.batch_id)
        assert batch is not None and batch.feature_sets == [{}, {"kind": "encoder"}]


def test_deleted_files_are_marked_missing(db_settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "lib"
    paths = _library(root, 2)
    _plan(db_settings, root)
    paths[1].unlink()
    plan = _plan(db_settings, root)
    assert plan.missing == [str(paths[1])]
    with session_scope(db_settings) as session:
        track = session.scalar(select(Track).where(Track.path == str(paths[1])))
        assert track is not None and track.status == TrackStatus.MISSING


def test_batch_closes_when_every_job_finished(db_settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "lib"
    _library(root, 2)
    plan = _plan(db_settings, root)
    with session_scope(db_settings) as session:
        for job in session.scalars(select(Job).where(Job.batch_id == plan.batch_id)):
            job.status = "done"
        counts = refresh_batch(session, plan.batch_id)
        batch = session.get(Batch, plan.batch_id)
        assert counts.complete and batch is not None and batch.status == BatchStatus.DONE
        assert batch.done == 2
