"""Distributed mode against embedded mode (the same files and model give the same database),
and two ingests of one library at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.engine import dispose_engines, session_scope
from db.models import Segment
from tests.audio_fixtures import make_bad
from tests.scheduler.cluster import Cluster, stop_process, write_library
from tests.scheduler.library_state import (
    assert_nothing_lost_or_duplicated,
    assert_same_library,
    library_state,
    save_tiny_model,
)
from tests.services import create_database, drop_database

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _label_and_ingest(cluster: Cluster, env: dict[str, str], model: Path, music: Path) -> dict:
    runner = Cluster(env, cluster.logs)
    runner.cli("db", "upgrade")
    runner.cli("models", "import", str(model), "--promote")
    return json.loads(runner.cli("ingest", str(music), "--json").stdout)


def test_cluster_and_embedded_runs_leave_the_same_database(
    cluster: Cluster, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    write_library(music, 9)
    make_bad(music, "text_wav")
    model = save_tiny_model(tmp_path / "tiny.pt")
    cluster.env["GENRECTL_UNKNOWN_THRESHOLD"] = "0"
    for name in ("cpu-a", "cpu-b"):
        cluster.start_worker("cpu", name=name)
    cluster.start_worker("gpu", name="gpu")
    distributed = _label_and_ingest(cluster, cluster.env, model, music)
    name, url = create_database()
    try:
        embedded_env = {
            **cluster.env,
            "GENRECTL_BROKER_URL": "",
            "GENRECTL_DATABASE_URL": url,
            "GENRECTL_HOME": str(tmp_path / "embedded"),
            "GENRECTL_DATA_DIR": str(tmp_path / "embedded" / "data"),
            "GENRECTL_WORKERS": "2",
        }
        embedded = _label_and_ingest(cluster, embedded_env, model, music)
        for report in (distributed, embedded):
            assert (report["featurized"], len(report["failed"])) == (9, 1)
            assert report["labelling"]["labelled"] == 9
        assert_same_library(
            library_state(Cluster(embedded_env, cluster.logs).settings),
            library_state(cluster.settings),
        )
    finally:
        dispose_engines()
        drop_database(name)


def test_two_ingests_of_the_same_library_at_once(cluster: Cluster, tmp_path: Path) -> None:
    music = tmp_path / "music"
    write_library(music, 24)
    for name in ("cpu-a", "cpu-b"):
        cluster.start_worker("cpu", name=name)
    ingests = [cluster.spawn("ingest", str(music), log=f"ingest-{i}.log") for i in (1, 2)]
    try:
        for i, process in enumerate(ingests, 1):
            assert process.wait(timeout=120) == 0, (cluster.logs / f"ingest-{i}.log").read_text()
    finally:
        for process in ingests:
            stop_process(process, grace=1.0)
    batches = json.loads(cluster.cli("jobs", "list", "--json").stdout)
    assert sorted(b["status"] for b in batches) == ["done", "done"]
    first, second = sorted(b["id"] for b in batches)
    assert_nothing_lost_or_duplicated(cluster.settings, first, 24, others=(second,))
    with session_scope(cluster.settings) as session:
        assert session.scalar(select(func.count()).select_from(Segment)) == 2 * 24
