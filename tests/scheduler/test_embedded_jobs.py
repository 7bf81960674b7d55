"""`genrectl reconcile` and `genrectl jobs retry` in embedded mode: the work runs right here."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from cli.main import cli
from db.engine import dispose_engines, session_scope
from genrectl.settings import Settings
from scheduler.batches import plan_ingest
from scheduler.scan import scan
from tests.audio_fixtures import make_bad
from tests.scheduler.cluster import write_library
from worker.features.mel import FeatureParams


def _genrectl(env: dict[str, str], *args: str, expect: int = 0) -> Result:
    result = CliRunner(env=env).invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


def test_reconcile_and_retry_run_locally(tmp_path: Path) -> None:
    env = {"GENRECTL_HOME": str(tmp_path / "home"), "GENRECTL_WORKERS": "1"}
    music = tmp_path / "music"
    write_library(music, 2, seconds=7.0)
    bad = make_bad(music, "text_wav")
    try:
        _genrectl(env, "db", "upgrade")
        # An ingest interrupted once its batch was committed (Ctrl-C, a crash).
        with session_scope(Settings.from_env(env)) as session:
            plan = plan_ingest(
                session,
                scan([music]),
                roots=[str(music)],
                feature_sets={FeatureParams().version: FeatureParams().to_dict()},
            )
        report = json.loads(_genrectl(env, "reconcile", "--grace", "0", "--json").stdout)
        assert report["requeued"] == {str(plan.batch_id): 3}
        shown = json.loads(_genrectl(env, "jobs", "show", str(plan.batch_id), "--json").stdout)
        assert (shown["status"], shown["done"], shown["failed"]) == ("done", 2, 1)
        assert [item["path"] for item in shown["failed_items"]] == [str(bad)]
        retried = json.loads(_genrectl(env, "jobs", "retry", str(plan.batch_id), "--json").stdout)
        assert retried == {"batch_id": plan.batch_id, "retried": 1, "done": 2, "failed": 1}
        no_wait = _genrectl(env, "jobs", "retry", "1", "--no-wait", expect=2)
        assert "distributed mode" in no_wait.output
    finally:
        dispose_engines()
