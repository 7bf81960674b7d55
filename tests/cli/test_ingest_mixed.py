"""A mixed library: every format genrectl reads, every kind of bad file, odd paths.

Every good file must be featurized; every bad one listed with a one-line reason; the batch
finishes either way.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.audio_fixtures import BAD_KINDS, FORMATS, make_bad, render
from tests.cli.conftest import Invoke, json_of


@pytest.fixture(scope="module")
def mixed_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lib") / "My Music"
    good = root / "Björk — Homogenic (1997) 🎧"
    for name in FORMATS:
        render(good, name, seconds=7.0)
    shutil.rmtree(good / "whole", ignore_errors=True)
    bad = root / "bad files"
    for kind in BAD_KINDS:
        make_bad(bad, kind)
    shutil.rmtree(bad / "whole", ignore_errors=True)
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    (root / "album.cue").write_text('FILE "x.wav" WAVE\n')
    (root / "info.nfo").write_text("ripped by nobody\n")
    os.symlink(root, good / "loop")  # a symlink loop in the tree
    return root


def test_mixed_library_ingests_good_files_and_reports_bad_ones(
    genrectl: Invoke, mixed_library: Path
) -> None:
    report = json_of(genrectl("ingest", str(mixed_library), "--json"))
    failed = {Path(f["path"]).stem: f["reason"] for f in report["failed"]}
    assert set(failed) == set(BAD_KINDS)
    assert all(reason and "\n" not in reason and len(reason) < 200 for reason in failed.values())
    assert report["featurized"] == len(FORMATS)
    assert report["ignored_non_audio"] == 3
    tracks = json_of(genrectl("tracks", "list", "--json"))
    ok = {Path(t["path"]).name for t in tracks if t["status"] == "ok"}
    assert len(ok) == len(FORMATS)
    assert all(
        t["duration_s"] == pytest.approx(7.0, abs=0.3) for t in tracks if t["status"] == "ok"
    )


def test_strict_exit_code_when_files_fail(genrectl: Invoke, mixed_library: Path) -> None:
    genrectl("ingest", str(mixed_library), "--strict", expect=4)


def test_file_deleted_between_scan_and_decode_is_recorded(genrectl: Invoke, tmp_path: Path) -> None:
    from db.engine import session_scope
    from db.models import Track
    from genrectl.settings import Settings
    from scheduler.batches import plan_ingest
    from scheduler.scan import scan
    from worker.features.featurize import featurize_chunk
    from worker.features.mel import FeatureParams

    root = tmp_path / "music"
    song = render(root, "wav_pcm16", seconds=7.0)
    settings = Settings.from_env({"GENRECTL_HOME": str(tmp_path / "home")})
    genrectl("status")  # creates the schema
    with session_scope(settings) as session:
        plan = plan_ingest(
            session,
            scan([root]),
            roots=[str(root)],
            feature_sets={FeatureParams().version: FeatureParams().to_dict()},
        )
    song.unlink()
    result = featurize_chunk(settings, batch_id=plan.batch_id, track_ids=plan.track_ids)
    assert (result.done, result.failed) == (0, 1)
    with session_scope(settings) as session:
        track = session.query(Track).one()
        assert track.status == "missing" and track.error == "file vanished before it was decoded"
