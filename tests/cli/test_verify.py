"""`genrectl verify [--repair]` on a real library: a shard with flipped bytes is skipped by
`relabel` with one warning, found by `verify`, and rebuilt from the audio by `--repair` into
the very labels it gave before; model files, orphans and leftovers are checked too."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from db.engine import dispose_engines, session_scope
from db.models import Segment, Shard, Track
from genrectl.settings import Settings
from tests.cli.runs import fault_env, genrectl, json_out
from tests.scheduler.cluster import write_library
from tests.scheduler.library_state import save_tiny_model

N_TRACKS = 8


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    """8 tracks in two shards of 4, labelled by a tiny seeded CNN: built once, kept aside."""
    root = tmp_path_factory.mktemp("verify") / "library"
    music = root / "music"
    write_library(music, N_TRACKS, seconds=13.0)
    env = {
        **fault_env(root),
        "GENRECTL_CHUNK_SIZE": "4",
        "GENRECTL_MAX_SEGMENTS": "2",
        "GENRECTL_UNKNOWN_THRESHOLD": "0",
    }
    genrectl(env, "ingest", str(music))
    genrectl(env, "models", "import", str(save_tiny_model(root / "tiny.pt")), "--promote")
    shutil.copytree(root, root.with_name("pristine"))
    return root, env, music


@pytest.fixture
def library(pristine: tuple[Path, dict[str, str], Path]) -> tuple[dict[str, str], Path]:
    """The labelled library as built, at the paths its database records (mtimes kept)."""
    root, env, music = pristine
    shutil.rmtree(root)
    shutil.copytree(root.with_name("pristine"), root)
    return env, music


def _labels(env: dict[str, str]) -> dict[str, tuple[Any, ...]]:
    rows = json_out(genrectl(env, "tracks", "list", "--json"))
    return {r["path"]: (r["status"], r["genre"], r["confidence"], r["top3"]) for r in rows}


def _shard_of(env: dict[str, str], track_path: str) -> tuple[Path, list[str]]:
    """The shard holding a track's rows, and the paths of every track it holds."""
    with session_scope(Settings.from_env(env)) as session:
        shard = session.scalars(
            select(Shard).join(Segment).join(Track).where(Track.path == track_path)
        ).first()
        assert shard is not None
        held = sorted(
            session.scalars(select(Track.path).join(Segment).where(Segment.shard_id == shard.id))
        )
        path = Path(shard.path)
    dispose_engines()
    return path, sorted(set(held))


def _flip_bytes(path: Path, n: int = 8) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_corrupted_shard_is_skipped_found_and_repaired_to_the_same_labels(
    library: tuple[dict[str, str], Path],
) -> None:
    env, music = library
    before = _labels(env)
    assert len(before) == N_TRACKS and all(v[1] != "unknown" for v in before.values())
    shard, damaged_tracks = _shard_of(env, str(music / "track000.wav"))
    assert len(damaged_tracks) == 4
    _flip_bytes(shard)

    relabel = genrectl(env, "relabel", "--json")
    warnings = [line for line in relabel.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, relabel.stderr
    assert f"'{shard}'" in warnings[0] and "checksum mismatch" in warnings[0]
    assert "genrectl verify --repair" in warnings[0]
    assert json_out(relabel)["labelled"] == N_TRACKS - 4  # the rest went on
    shown = json_out(genrectl(env, "show", damaged_tracks[0], "--json"))
    assert "verify --repair" in (shown["segments_note"] or "")

    found = genrectl(env, "verify", "--json", expect=6)
    problems = json_out(found)["problems"]
    assert [(p["kind"], p["path"], p["tracks"]) for p in problems] == [("shard", str(shard), 4)]
    assert problems[0]["reason"].startswith("checksum mismatch")
    said = genrectl(env, "verify", expect=6).stdout
    assert f"damaged  shard {shard}: checksum mismatch" in said
    assert "Run `genrectl verify --repair`" in said

    repaired = json_out(genrectl(env, "verify", "--repair", "--json"))
    assert repaired["ok"] and repaired["refeaturized"] == 4 and repaired["missing"] == 0
    assert not shard.exists()
    after = _labels(env)
    assert set(after) == set(before)
    for path, (status, genre, confidence, top3) in before.items():
        assert after[path][:2] == (status, genre), path
        assert after[path][2] == pytest.approx(confidence, abs=1e-3), path
        assert [g for g, _ in after[path][3]] == [g for g, _ in top3], path
    assert json_out(genrectl(env, "verify", "--json"))["problems"] == []
    assert "warning" not in genrectl(env, "relabel").stderr


@pytest.mark.slow
def test_a_stopped_repair_is_finished_by_the_next_and_gone_audio_is_marked_missing(
    library: tuple[dict[str, str], Path],
) -> None:
    from scheduler.liveness import interrupt_batch
    from scheduler.verify import plan_repair

    env, music = library
    before = _labels(env)
    shard, held = _shard_of(env, str(music / "track000.wav"))
    _flip_bytes(shard)
    Path(held[0]).unlink()
    genrectl(env, "verify", expect=6)  # marks the shard damaged
    settings = Settings.from_env(env)
    with session_scope(settings) as session:  # a repair stopped (Ctrl-C) before any work
        plan = plan_repair(session, settings, owner=None)
        assert plan.batch_id is not None and (len(plan.track_ids), plan.missing) == (3, 1)
        interrupt_batch(session, plan.batch_id, "interrupted by Ctrl-C")
    dispose_engines()
    found = json_out(genrectl(env, "verify", "--json", expect=6))["problems"]
    assert sorted((p["kind"], p["tracks"]) for p in found) == [("shard", 0), ("unfinished", 3)]

    repaired = json_out(genrectl(env, "verify", "--repair", "--json"))
    assert repaired["ok"] and repaired["refeaturized"] == 3 and not shard.exists()
    after = _labels(env)
    assert after[held[0]][0] == "missing"
    for path in held[1:]:
        assert after[path][:2] == before[path][:2], path
        assert after[path][2] == pytest.approx(before[path][2], abs=1e-3), path


def test_model_files_orphans_and_leftovers(tmp_path: Path) -> None:
    env = {**fault_env(tmp_path), "GENRECTL_STARTER_MODEL": "1"}
    genrectl(env, "relabel")  # registers the bundled starter: its file is copied into the home
    settings = Settings.from_env(env)
    starter = next(settings.model_dir.glob("*.pt"))
    original = starter.read_bytes()
    _flip_bytes(starter)
    settings.shard_dir.mkdir(parents=True)
    orphan = settings.shard_dir / "shard-0123.h5"
    orphan.write_bytes(b"a shard whose commit never came")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    fresh = settings.shard_dir / "shard-4567.h5"  # a concurrent run's, about to be committed
    fresh.write_bytes(b"x")
    leftover = settings.shard_dir / ".shard-89ab.h5.999999999.tmp"  # its pid is gone
    leftover.write_bytes(b"half")

    found = json_out(genrectl(env, "verify", "--json", expect=6))["problems"]
    assert sorted((p["kind"], Path(p["path"]).name) for p in found) == [
        ("model", starter.name),
        ("orphan", orphan.name),
        ("temporary", leftover.name),
    ]
    repaired = json_out(genrectl(env, "verify", "--repair", "--json"))
    assert repaired["ok"], repaired
    assert starter.read_bytes() == original
    assert not orphan.exists() and not leftover.exists() and fresh.exists()


def test_a_model_file_that_cannot_be_rebuilt_is_said_so(tmp_path: Path) -> None:
    env = fault_env(tmp_path)
    model = save_tiny_model(tmp_path / "tiny.pt")
    genrectl(env, "models", "import", str(model), "--name", "tiny")
    stored = next(Settings.from_env(env).model_dir.glob("*.pt"))
    _flip_bytes(stored)
    result = genrectl(env, "verify", "--repair", expect=6)
    assert "model tiny: checksum mismatch" in result.stdout
    assert "cannot be rebuilt: import it again" in result.stdout
