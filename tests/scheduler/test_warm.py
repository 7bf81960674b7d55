"""The warm worker (scheduler.warm): a real detached process on a real Unix socket, as
`genrectl ingest` and `predict` use it, its answers, refusals and ends."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from db.migrate import upgrade
from genrectl.settings import Settings
from scheduler.warm import (
    WarmClient,
    WarmPaths,
    WarmUnavailable,
    WarmWorkerDied,
    running_worker,
    stop_workers_under,
    worker_key,
)
from tests.cli.runs import Run, alive, genrectl, json_out, leftovers, track_statuses
from tests.scheduler.cluster import wait_for, write_library

SLEEP = "tests.scheduler.warm_targets:touch_and_sleep"


@pytest.fixture
def warm_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A migrated embedded home with no model (the worker warms up quickly); every warm
    worker of it is stopped after the test."""
    env = {
        "GENRECTL_HOME": str(tmp_path / "home"),
        "GENRECTL_STARTER_MODEL": "0",
        "GENRECTL_WARM_SECONDS": "60",
    }
    upgrade(Settings.from_env(env))
    yield env
    _stop_all(tmp_path)


def _stop_all(root: Path) -> None:
    pids = [int(s["pid"]) for s in _statuses(root)]
    stop_workers_under(root)
    wait_for(lambda: not any(alive(p) for p in pids), timeout=20, what="warm workers to exit")


def _statuses(root: Path) -> list[dict[str, Any]]:
    import json

    from scheduler.warm import runtime_dir

    found = []
    for path in runtime_dir().glob("warm-*.json"):
        status = json.loads(path.read_text())
        if Path(status["home"]).is_relative_to(root):
            found.append(status)
    return found


def _call_in_thread(client: WarmClient, *args: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(client.call(*args))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_calls_answers_errors_and_busy(warm_env: dict[str, str], tmp_path: Path) -> None:
    settings = Settings.from_env(warm_env)
    client = WarmClient(settings)
    assert client.call("os.path:join", "a", "b") == "a/b"  # started it, waited, ran
    pid = running_worker(settings)["pid"]  # type: ignore[index]
    assert alive(pid) and os.getpgid(pid) != os.getpgid(0)  # detached: Ctrl-C misses it
    with pytest.raises(FileNotFoundError):
        client.call("os:stat", str(tmp_path / "absent"))
    # A second command while it works gets "busy" at once, and runs its work elsewhere.
    marker = tmp_path / "started"
    thread, outcome = _call_in_thread(client, SLEEP, str(marker), 2.0)
    wait_for(marker.exists, timeout=30, what="the first call to start")
    with pytest.raises(WarmUnavailable, match="busy"):
        WarmClient(settings).call("os.path:join", "c", "d")
    thread.join(30)
    assert outcome == ["slept"]
    assert running_worker(settings)["pid"] == pid  # type: ignore[index]
    log = (Path(warm_env["GENRECTL_HOME"]) / "logs" / "worker.log").read_text()
    assert f"{pid} scheduler.warm INFO warm worker ran os.path:join" in log


def _in_a_long_call(
    settings: Settings, tmp_path: Path
) -> tuple[WarmClient, threading.Thread, list[Any], int]:
    """A worker started and busy with a 120 s call: its client, the calling thread, where
    the call's outcome goes, and the worker's pid."""
    client = WarmClient(settings)
    marker = tmp_path / "started"
    thread, outcome = _call_in_thread(client, SLEEP, str(marker), 120.0)
    wait_for(marker.exists, timeout=60, what="the call to start")
    return client, thread, outcome, running_worker(settings)["pid"]  # type: ignore[index]


def test_a_client_that_goes_away_interrupts_the_call(warm_env: dict[str, str], tmp_path: Path):
    settings = Settings.from_env(warm_env)
    client, thread, outcome, pid = _in_a_long_call(settings, tmp_path)
    client.cancel()
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], WarmWorkerDied)
    # The worker was interrupted mid-call (not after 120 s), and exited, removing its socket.
    wait_for(lambda: not alive(pid), timeout=15, what="the interrupted worker to exit")
    assert not WarmPaths.of(worker_key(settings)).socket.exists()
    assert (
        "interrupted (its command went away)"
        in (Path(warm_env["GENRECTL_HOME"]) / "logs" / "worker.log").read_text()
    )


def test_a_killed_worker_is_said_dead_and_the_next_call_starts_another(
    warm_env: dict[str, str], tmp_path: Path
) -> None:
    settings = Settings.from_env(warm_env)
    client, thread, outcome, pid = _in_a_long_call(settings, tmp_path)
    os.kill(pid, signal.SIGKILL)  # as a decoder crash would end it
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], WarmWorkerDied)
    # Its socket file is left behind; the next worker takes the lock and replaces it.
    assert client.call("os.path:join", "e", "f") == "e/f"
    assert running_worker(settings)["pid"] != pid  # type: ignore[index]


def test_an_idle_worker_exits_and_removes_its_socket(tmp_path: Path) -> None:
    env = {"GENRECTL_HOME": str(tmp_path / "home"), "GENRECTL_STARTER_MODEL": "0"}
    settings = Settings.from_env({**env, "GENRECTL_WARM_SECONDS": "1"})
    upgrade(settings)
    try:
        WarmClient(settings).call("os.path:join", "a", "b")
        pid = running_worker(settings)["pid"]  # type: ignore[index]
        wait_for(lambda: not alive(pid), timeout=30, what="the idle worker to exit")
        assert running_worker(settings) is None
        assert not WarmPaths.of(worker_key(settings)).socket.exists()
    finally:
        _stop_all(tmp_path)


def test_the_key_follows_home_and_genrectl_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = Settings.from_env({"GENRECTL_HOME": str(tmp_path / "one")})
    two = Settings.from_env({"GENRECTL_HOME": str(tmp_path / "two")})
    assert worker_key(one) == worker_key(one) != worker_key(two)
    before = worker_key(one)
    monkeypatch.setenv("GENRECTL_MAX_SEGMENTS", "3")  # a worker started with other settings
    assert worker_key(one) != before
    monkeypatch.setenv("UNRELATED", "1")
    monkeypatch.delenv("GENRECTL_MAX_SEGMENTS")
    assert worker_key(one) == before


def _ran(home: Path, target: str) -> list[str]:
    """The pids of the warm workers that ran ``target``, in order, from the home's log."""
    lines = (home / "logs" / "worker.log").read_text().splitlines()
    return [line.split()[2] for line in lines if f"warm worker ran {target} " in line]


@pytest.mark.slow
def test_ingest_and_predict_hand_their_work_to_one_warm_worker(tmp_path: Path) -> None:
    music = tmp_path / "music"
    write_library(music, 1, seconds=8.0)
    home = tmp_path / "home"
    env = {"GENRECTL_HOME": str(home), "GENRECTL_WARM_SECONDS": "60"}
    try:
        first = json_out(genrectl(env, "ingest", str(music), "--json"))
        assert first["featurized"] == 1 and first["labelling"]["labelled"] == 1
        write_library(music, 1, seconds=8.0, first=1)
        second = json_out(genrectl(env, "ingest", str(music), "--json"))
        assert second["new"] == 1 and second["labelling"]["labelled"] == 1
        workers = _ran(home, "scheduler.pool:call_task")
        assert len(workers) == 2 and workers[0] == workers[1], workers  # the same process
        status = json_out(genrectl(env, "status", "--json"))["warm_worker"]
        assert str(status["pid"]) == workers[0] and not status["busy"]
        track = sorted(music.iterdir())[0]
        warm = json_out(genrectl(env, "predict", str(track), "--json"))
        assert _ran(home, "worker.inference.label:predict_files") == workers[:1]
        here = json_out(
            genrectl({**env, "GENRECTL_WARM_SECONDS": "0"}, "predict", str(track), "--json")
        )
        assert warm == here  # the same answer as a prediction in the command's own process
        relabelled = json_out(genrectl(env, "relabel", "--json"))
        assert relabelled["labelled"] == 2
        assert set(_ran(home, "scheduler.pipeline:run_here")) == {workers[0]}  # one per shard
        # A library started over (database deleted and created again) between commands: the
        # worker writes to the new database, not through a connection to the deleted file.
        (home / "genrectl.db").unlink()
        genrectl(env, "db", "upgrade")
        again = json_out(genrectl(env, "ingest", str(music), "--json"))
        assert again["new"] == 2 and again["labelling"]["labelled"] == 2
        assert len(json_out(genrectl(env, "tracks", "list", "--json"))) == 2
        assert _ran(home, "scheduler.pool:call_task") == workers[:1] * 3
    finally:
        _stop_all(tmp_path)


def _in_call(log: Path) -> bool:
    lines = log.read_text().splitlines()
    started = sum(" warm worker runs " in line for line in lines)
    ended = sum(" warm worker ran " in line or "interrupted" in line for line in lines)
    return started > ended


@pytest.mark.slow
def test_kill_9_of_the_command_interrupts_the_warm_worker_and_the_next_ingest_resumes(
    tmp_path: Path,
) -> None:
    music = tmp_path / "music"
    write_library(music, 6, seconds=7.0)
    env = {
        "GENRECTL_HOME": str(tmp_path / "home"),
        "GENRECTL_STARTER_MODEL": "0",  # the reference mel: quick, so the chunk is caught
        "GENRECTL_CHUNK_SIZE": "1",
        "GENRECTL_WORKERS": "1",
        "GENRECTL_WARM_SECONDS": "60",
    }
    settings = Settings.from_env(env)
    log = tmp_path / "home" / "logs" / "worker.log"
    run = Run.start(env, "ingest", str(music), logs=tmp_path / "logs")
    try:
        from tests.cli.runs import wait_for_shards

        wait_for_shards(settings, 1)
        # Its key holds the command's GENRECTL_* environment, not this test's: found by home.
        (status,) = _statuses(tmp_path)
        pid = int(status["pid"])
        run.process.kill()
        run.process.wait(timeout=10)
        # A chunk in hand when the command died is rolled back and the worker exits; one
        # killed between chunks leaves it idle, warm for the next command. Either way no
        # chunk runs on for a command that is gone.
        wait_for(
            lambda: not alive(pid) or not _in_call(log),
            timeout=20,
            what="the warm worker to stop or be idle",
        )
    finally:
        run.stop()
        _stop_all(tmp_path)
    assert leftovers(settings.data_dir) == []
    assert "failed" not in track_statuses(settings)
    try:
        report = json_out(genrectl(env, "ingest", str(music), "--json"))
    finally:
        _stop_all(tmp_path)
    assert report["failed"] == [] and track_statuses(settings) == {"ok": 6}


def test_a_worker_that_cannot_start_is_not_waited_for(warm_env: dict[str, str]) -> None:
    import subprocess
    import sys
    import time

    client = WarmClient(Settings.from_env(warm_env))
    failing = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    start = time.monotonic()
    assert client._wait_for_socket(failing) is None
    assert time.monotonic() - start < 20  # not START_TIMEOUT_S (30 s): it saw the exit
