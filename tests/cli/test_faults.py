"""Faults of the machine during `genrectl ingest`, on real files and a real small filesystem:
a full disk, kill -9, Ctrl-C and SIGTERM, two runs at once, a read-only home. None of them
marks a track failed; each says what happened in one line; the next run completes.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from genrectl.settings import Settings
from tests.cli.runs import (
    Run,
    alive,
    fault_env,
    genrectl,
    json_out,
    leftovers,
    track_statuses,
    wait_for_shards,
)
from tests.scheduler.cluster import wait_for, write_library
from tests.smallfs import read_only_filesystem, small_filesystem

N_TRACKS = 10
# The run after the fault: one worker process is enough and leaves the other core alone.
ONE_WORKER = {"GENRECTL_WORKERS": "1"}


def _library(tmp_path: Path, n: int = N_TRACKS, first: int = 0) -> Path:
    music = tmp_path / "music"
    write_library(music, n, seconds=7.0, first=first)
    return music


def _ingest_under_way(tmp_path: Path, shards: int) -> tuple[Path, dict[str, str], Run]:
    """An `ingest` of N_TRACKS in a process of its own, once ``shards`` are committed."""
    music = _library(tmp_path)
    env = fault_env(tmp_path)
    run = Run.start(env, "ingest", str(music), logs=tmp_path / "logs")
    try:
        wait_for_shards(Settings.from_env(env), shards)
    except BaseException:
        run.stop()
        raise
    return music, env, run


def _complete(env: dict[str, str], n: int) -> None:
    """Every track ok, and every shard sound and referenced (`genrectl verify` says so)."""
    assert track_statuses(Settings.from_env(env)) == {"ok": n}
    verified = json_out(genrectl(env, "verify", "--json"))
    assert verified["ok"] and verified["problems"] == [], verified


@pytest.mark.slow
def test_disk_full_mid_batch_fails_no_track_and_a_later_ingest_completes(tmp_path: Path) -> None:
    music = _library(tmp_path)
    with small_filesystem(tmp_path / "data", size_kb=4096) as small:
        env = fault_env(tmp_path, data_dir=small.path)
        settings = Settings.from_env(env)
        run = Run.start(env, "ingest", str(music), logs=tmp_path / "logs")
        # Another program fills the disk once the batch is under way.
        filler = threading.Thread(target=lambda: (wait_for_shards(settings, 1), small.fill()))
        filler.start()
        code = run.wait()
        filler.join()
        assert code == 5, run.stderr
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and small.full_message in errors[0], run.stderr
        assert "feature shards" in errors[0]
        if small.mounted:
            assert f"{small.path}" in errors[0] and "set GENRECTL_DATA_DIR" in errors[0]
        assert "Stopped: " in run.stdout and "none marked failed" in run.stdout
        statuses = track_statuses(settings)
        assert "failed" not in statuses and statuses.get("pending", 0) > 0, statuses
        assert leftovers(small.path) == []
        batch = json_out(genrectl(env, "jobs", "list", "--json"))[0]
        assert batch["status"] == "interrupted" and batch["failed"] == 0

        small.free()
        again = json_out(genrectl({**env, **ONE_WORKER}, "ingest", str(music), "--json"))
        assert again["failed"] == [] and again["featurized"] == statuses["pending"]
        _complete(env, N_TRACKS)


def test_a_batch_that_cannot_fit_is_refused_before_any_work(tmp_path: Path) -> None:
    music = _library(tmp_path, 4)
    with small_filesystem(tmp_path / "data", size_kb=512) as small:
        env = {**fault_env(tmp_path, data_dir=small.path), "GENRECTL_MAX_SEGMENTS": "20"}
        if not small.mounted:
            small.fill()
        result = genrectl(env, "ingest", str(music), expect=5)
        if small.mounted:  # 4 tracks of up to 20 segments: about 1.3 MB
            assert "error: not enough space on " in result.stderr
            assert "of shards needed for 4 tracks" in result.stderr
            assert list(small.path.rglob("*.h5")) == []
        assert track_statuses(Settings.from_env(env)) == {"pending": 4}


@pytest.mark.slow
def test_kill_9_leaves_no_process_and_the_next_ingest_resumes(tmp_path: Path) -> None:
    music, env, run = _ingest_under_way(tmp_path, 2)
    settings = Settings.from_env(env)
    try:
        children = run.children()
        assert len(children) >= 2, children  # the pool's workers (and its resource tracker)
        run.process.kill()
        run.process.wait(timeout=10)
        wait_for(
            lambda: not any(alive(pid) for pid in children),
            timeout=10,
            what=f"the workers {children} of the killed genrectl to exit",
        )
    finally:
        run.stop()
    assert "failed" not in track_statuses(settings)
    resumed = genrectl({**env, **ONE_WORKER}, "ingest", str(music), "--json")
    assert "note: batch #1 was interrupted: its genrectl process died" in resumed.stderr
    report = json_out(resumed)
    assert report["failed"] == [] and report["featurized"] + report["unchanged"] == N_TRACKS
    batches = {b["id"]: b for b in json_out(genrectl(env, "jobs", "list", "--json"))}
    assert batches[1]["status"] == "interrupted" and batches[2]["status"] == "done"
    _complete(env, N_TRACKS)
    assert leftovers(settings.data_dir) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "group", "code", "said"),
    [(signal.SIGINT, True, 130, "Ctrl-C"), (signal.SIGTERM, False, 143, "SIGTERM")],
    ids=["ctrl-c", "sigterm"],
)
def test_interrupt_stops_cleanly_says_what_is_kept_and_the_next_run_completes(
    tmp_path: Path, signum: int, group: bool, code: int, said: str
) -> None:
    music, env, run = _ingest_under_way(tmp_path, 1)
    settings = Settings.from_env(env)
    try:
        children = run.children()
        # Ctrl-C reaches the terminal's whole process group; `kill PID` only the CLI.
        os.killpg(run.process.pid, signum) if group else run.process.send_signal(signum)
        assert run.wait(timeout=60) == code, run.stderr
    finally:
        run.stop()
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted ({said}): "), run.stderr
    assert "tracks featurized and kept" in last and f"`genrectl ingest {music}` continues" in last
    # The workers were joined before it exited; multiprocessing's resource tracker ends as
    # soon as it sees its parent gone.
    wait_for(lambda: not any(alive(pid) for pid in children), timeout=5, what="no child left")
    assert leftovers(settings.data_dir) == []
    assert "failed" not in track_statuses(settings)
    batch = json_out(genrectl(env, "jobs", "list", "--json"))[0]
    assert batch["status"] == "interrupted"
    if signum == signal.SIGINT:  # the same state either way: one next run is enough
        genrectl({**env, **ONE_WORKER}, "ingest", str(music))
        _complete(env, N_TRACKS)


@pytest.mark.slow
def test_two_ingests_on_one_home_at_once_both_complete(tmp_path: Path) -> None:
    first = tmp_path / "music-a"
    second = tmp_path / "music-b"
    write_library(first, 6, seconds=7.0)
    write_library(second, 5, seconds=7.0, first=6)
    env = {**fault_env(tmp_path), **ONE_WORKER}  # a fresh home: both race to create its schema
    runs = [Run.start(env, "ingest", str(m), logs=tmp_path / "logs") for m in (first, second)]
    try:
        codes = [run.wait() for run in runs]
    finally:
        for run in runs:
            run.stop()
    assert codes == [0, 0], [run.stderr for run in runs]
    batches = json_out(genrectl(env, "jobs", "list", "--json"))
    assert sorted((b["status"], b["done"]) for b in batches) == [("done", 5), ("done", 6)]
    _complete(env, 11)


def test_a_read_only_home_gets_a_clear_message(tmp_path: Path) -> None:
    env = fault_env(tmp_path)
    genrectl(env, "status")  # the database exists
    with read_only_filesystem(tmp_path / "home"):
        result = genrectl(env, "status", expect=5)
    database = Path(env["GENRECTL_HOME"]) / "genrectl.db"
    assert result.stderr.startswith(f"error: cannot write the database {database}: ")
    assert "set GENRECTL_HOME" in result.stderr and len(result.stderr.splitlines()) == 1


def test_tracks_an_internal_error_left_pending_are_said_last_with_the_log(tmp_path: Path) -> None:
    from cli.batchrun import BatchRun
    from genrectl.errors import InternalFault
    from scheduler.batches import IngestPlan

    settings = Settings.from_env(fault_env(tmp_path))
    run = BatchRun(settings, IngestPlan(1, [1, 2]), "genrectl ingest /m", quiet=True, as_json=False)
    run.raise_if_deferred()  # nothing deferred: nothing said
    run.deferred = [("/m/a.wav", "internal error: ValueError: bad shape"), ("/m/b.wav", "x")]
    with pytest.raises(InternalFault) as caught:
        run.raise_if_deferred()
    assert caught.value.exit_code == 5
    assert str(caught.value) == (
        "internal error: ValueError: bad shape on '/m/a.wav' and 1 other tracks; not your "
        "files' fault: they stay pending and `genrectl ingest /m` tries them again (a track "
        f"fails alone after 3 tries). The traceback is in {settings.home}/logs/worker.log; "
        "please report it"
    )
