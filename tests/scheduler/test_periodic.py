"""The periodic jobs: one holder per period whatever the number of workers asking (a lease in
the database, SQLite and PostgreSQL), and what each run did recorded for `status`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from cli.main import cli
from db.engine import session_scope
from db.leases import lease_reports, take_lease
from db.models import Lease, utcnow
from genrectl.settings import Settings
from scheduler.periodic import periodic_jobs, run_due


@pytest.fixture
def settings(db_settings: Settings) -> Settings:
    return db_settings


def _expire(settings: Settings) -> None:
    with session_scope(settings) as session:
        session.execute(update(Lease).values(expires_at=utcnow() - timedelta(seconds=1)))


def test_one_holder_per_period(settings: Settings) -> None:
    with session_scope(settings) as session:
        assert take_lease(session, "reconcile", "cpu-1@a", seconds=30)
    for holder in ("cpu-2@b", "gpu-3@c", "cpu-1@a"):  # nobody, not even the holder, before expiry
        with session_scope(settings) as session:
            assert not take_lease(session, "reconcile", holder, seconds=30)
    _expire(settings)
    with session_scope(settings) as session:
        assert take_lease(session, "reconcile", "gpu-3@c", seconds=30)
        assert not take_lease(session, "reconcile", "cpu-2@b", seconds=30)
        assert lease_reports(session)["reconcile"]["holder"] == "gpu-3@c"


def test_the_due_jobs_run_once_and_say_what_they_did(settings: Settings) -> None:
    assert [job.name for job in periodic_jobs(settings)] == ["reconcile", "gc"]
    assert run_due(settings, "cpu-1@a") == ["reconcile", "gc"]
    assert run_due(settings, "cpu-2@b") == []  # within the period: the others wait
    with session_scope(settings) as session:
        reports = lease_reports(session)
    assert reports["reconcile"]["holder"] == "cpu-1@a" and reports["reconcile"]["ran_at"]
    assert reports["reconcile"]["report"]["requeued_items"] == 0
    assert reports["gc"]["report"] == {"files": 0, "shards": 0, "segments": 0, "bytes": 0}
    _expire(settings)
    assert run_due(settings, "cpu-2@b") == ["reconcile", "gc"]
    status = json.loads(
        CliRunner(
            env={
                "GENRECTL_HOME": str(settings.home),
                "GENRECTL_STARTER_MODEL": "0",
                "GENRECTL_DATABASE_URL": settings.database_url,
            }
        )
        .invoke(cli, ["status", "--json"], catch_exceptions=False)
        .stdout
    )
    assert status["housekeeping"]["reconcile"]["holder"] == "cpu-2@b"


def test_an_interval_of_zero_turns_a_job_off(tmp_path: Path) -> None:
    env = {"GENRECTL_HOME": str(tmp_path), "GENRECTL_GC_INTERVAL": "0"}
    assert [job.name for job in periodic_jobs(Settings.from_env(env))] == ["reconcile"]
    off = {**env, "GENRECTL_RECONCILE_INTERVAL": "0"}
    assert periodic_jobs(Settings.from_env(off)) == []
