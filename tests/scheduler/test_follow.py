"""What a waiting CLI is told when the wait stops moving (no broker or worker needed)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from genrectl.settings import Settings
from scheduler import follow
from scheduler.cluster import WorkerInfo

SETTINGS = Settings.from_env({"GENRECTL_BROKER_URL": "redis://queue:6379/0", "HOME": "/tmp"})


def _watch(
    monkeypatch: pytest.MonkeyPatch, workers: list[WorkerInfo], depths: dict[str, int]
) -> list[str]:
    monkeypatch.setattr(follow, "live_workers", lambda _settings: workers)
    monkeypatch.setattr(follow, "queue_depths", lambda _settings: depths)
    said: list[str] = []
    watch = follow.WorkerWatch(SETTINGS, "cpu", said.append, hint="Ctrl-C is safe.", stall_s=0)
    for finished in (3, 3, 3):  # no progress; asked once, not again before recheck_s
        watch.observe(finished)
    return said


def test_no_live_worker_on_the_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    said = _watch(monkeypatch, [WorkerInfo("gpu-1@h", ["gpu"])], {"cpu": 4, "in_flight": 0})
    assert said == [
        "no live worker consumes the 'cpu' queue: start one with "
        "`genrectl worker --queues cpu`. Ctrl-C is safe."
    ]


def test_live_workers_but_the_messages_are_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    said = _watch(monkeypatch, [WorkerInfo("cpu-1@h", ["cpu"])], {"cpu": 0, "in_flight": 0})
    assert len(said) == 1 and "`genrectl reconcile` sends them again" in said[0]


def test_a_busy_cluster_is_not_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _watch(monkeypatch, [WorkerInfo("cpu-1@h", ["cpu"])], {"cpu": 0, "in_flight": 1}) == []


def test_a_database_outage_is_said_once_and_its_end_too() -> None:
    said: list[str] = []
    poll = follow.DatabasePoll(said.append)

    def down() -> int:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    assert poll.read(down) is None and poll.read(down) is None
    assert poll.read(lambda: 7) == 7
    assert said == [
        "database unavailable, still waiting: (builtins.Exception) server closed the connection",
        "database reachable again",
    ]
