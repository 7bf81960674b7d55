"""How a featurize task fails: a message given back by a worker that died on it goes one
track at a time (a file that killed MAX_ATTEMPTS workers fails alone); a bug, a full disk or
a transient error leaves the chunk's items queued (with the reason noted) for a retry: none
is the files' fault."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

import worker.features.featurize
from db.engine import dispose_engines, session_scope
from db.migrate import upgrade
from db.models import Job, Track
from genrectl.errors import InternalFault, StorageFullError
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
    ("error", "raised", "noted"),
    [
        (RuntimeError("boom"), InternalFault, "internal error: RuntimeError: boom (not your"),
        (OSError(errno.ENOSPC, "No space left on device"), StorageFullError, "no space left on"),
        (OperationalError("COMMIT", {}, Exception("gone")), OperationalError, None),
    ],
)
def test_a_bug_a_full_disk_or_a_transient_error_leaves_the_chunk_queued(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    raised: type[Exception],
    noted: str | None,
) -> None:
    settings, plan, _paths = _planned(tmp_path, 2)
    monkeypatch.setenv("GENRECTL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GENRECTL_DATABASE_URL", raising=False)

    def fails(*_args: object, **_kwargs: object) -> None:
        raise error

    monkeypatch.setattr(worker.features.featurize, "featurize_chunk", fails)
    try:
        with pytest.raises(raised):
            featurize_chunk_task(plan.batch_id, plan.track_ids)  # called directly: no retry
        jobs = _jobs(settings)
        assert [status for status, _ in jobs] == ["queued"] * 2
        for _, reason in jobs:
            assert reason == noted if noted is None else (reason or "").startswith(noted)
        with session_scope(settings) as session:
            assert set(session.scalars(select(Track.status))) == {"pending"}
    finally:
        dispose_engines()


def test_an_internal_error_on_one_file_keeps_it_pending_until_it_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scheduler.liveness import interrupt_batch
    from worker.features.featurize import featurize_chunk

    settings, plan, paths = _planned(tmp_path, 3)
    real = worker.features.featurize.featurize_file

    def buggy(path: Path, **kwargs: object) -> object:
        if path == paths[1]:
            raise ValueError("operands could not be broadcast together")
        return real(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(worker.features.featurize, "featurize_file", buggy)
    feature_sets = {FeatureParams().version: FeatureParams().to_dict()}
    try:
        for run in range(1, MAX_ATTEMPTS + 1):
            result = featurize_chunk(settings, batch_id=plan.batch_id, track_ids=plan.track_ids)
            assert (result.done, result.failed, result.deferred) == (
                (2 if run == 1 else 0),
                (1 if run == MAX_ATTEMPTS else 0),
                (0 if run == MAX_ATTEMPTS else 1),
            )
            with session_scope(settings) as session:
                culprit = session.scalar(select(Track).where(Track.path == str(paths[1])))
                assert culprit is not None
                status, error = culprit.status, culprit.error
                if run < MAX_ATTEMPTS:  # the run stops (Ctrl-C, the CLI's end); a new one starts
                    interrupt_batch(session, plan.batch_id, "test run over")
            if run < MAX_ATTEMPTS:
                assert (status, error) == ("pending", None)
                with session_scope(settings) as session:
                    plan = plan_ingest(
                        session,
                        scan([tmp_path / "music"]),
                        roots=[str(tmp_path / "music")],
                        feature_sets=feature_sets,
                    )
                assert len(plan.track_ids) == 1  # only the culprit is taken up again
        assert status == "failed"
        assert error == (
            "internal error: ValueError: operands could not be broadcast together "
            "(on 3 tries: a bug in genrectl, please report it)"
        )
    finally:
        dispose_engines()
