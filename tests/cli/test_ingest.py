from __future__ import annotations

from pathlib import Path

import h5py

from tests.cli.conftest import Invoke, json_of, write_tone


def _library(root: Path) -> None:
    write_tone(root / "a" / "one.wav", seconds=7)
    write_tone(root / "a" / "two.wav", seconds=13, freq=220)
    write_tone(root / "b" / "Ünïcode song.wav", seconds=6.5, freq=880)
    (root / "b" / "notes.wav").write_text("this is not audio\n")
    (root / "b" / "empty.mp3").write_bytes(b"")
    (root / "b" / "cover.jpg").write_bytes(b"\xff\xd8\xff")


def test_ingest_featurizes_good_files_and_lists_bad_ones(genrectl: Invoke, tmp_path: Path) -> None:
    root = tmp_path / "music"
    _library(root)
    report = json_of(genrectl("ingest", str(root), "--json"))
    assert (report["new"], report["featurized"], report["ignored_non_audio"]) == (5, 3, 1)
    reasons = {Path(f["path"]).name: f["reason"] for f in report["failed"]}
    assert set(reasons) == {"notes.wav", "empty.mp3"}
    assert reasons["empty.mp3"] == "empty file"
    status = json_of(genrectl("status", "--json"))
    assert status["tracks"]["ok"] == 3 and status["tracks"]["failed"] == 2
    # The starter reads mn04 (10 s windows; shorter tracks repeated to fill one) and msd_fcn
    # (one 29 s window): one row of each per track, the 13 s track included.
    assert status["segments"] == 3 * 2
    failed = json_of(genrectl("tracks", "list", "--failed", "--json"))
    assert {Path(t["path"]).name for t in failed} == {"notes.wav", "empty.mp3"}
    assert all(t["error"] for t in failed)


def test_second_ingest_decodes_nothing(genrectl: Invoke, tmp_path: Path) -> None:
    root = tmp_path / "music"
    _library(root)
    genrectl("ingest", str(root))
    again = genrectl("ingest", str(root))
    assert "Nothing to decode: 3 tracks unchanged, 2 failed before" in again.stdout
    report = json_of(genrectl("ingest", str(root), "--json"))
    assert (report["unchanged"], report["featurized"], report["failed"]) == (3, 0, [])


def test_changed_file_is_refeaturized_and_deleted_file_marked_missing(
    genrectl: Invoke, tmp_path: Path
) -> None:
    root = tmp_path / "music"
    _library(root)
    genrectl("ingest", str(root))
    write_tone(root / "a" / "one.wav", seconds=19)  # now 3 segments
    (root / "a" / "two.wav").unlink()
    report = json_of(genrectl("ingest", str(root), "--json"))
    assert (report["changed"], report["featurized"]) == (1, 1)
    assert [Path(p).name for p in report["missing"]] == ["two.wav"]
    tracks = {Path(t["path"]).name: t for t in json_of(genrectl("tracks", "list", "--json"))}
    assert tracks["two.wav"]["status"] == "missing"
    assert tracks["one.wav"]["duration_s"] == 19.0


def test_shards_hold_every_row_of_the_promoted_models_features_with_their_checksum(
    genrectl: Invoke, tmp_path: Path
) -> None:
    from db.engine import session_scope
    from db.models import Shard
    from db.registry import starter_metadata
    from genrectl.settings import Settings
    from worker.features.sets import model_feature_sets
    from worker.features.shards import open_shard

    root = tmp_path / "music"
    _library(root)
    genrectl("ingest", str(root))
    meta = starter_metadata()
    assert meta is not None
    sets = {s.version: s for s in model_feature_sets(meta["feature_params"])}
    settings = Settings.from_env({"GENRECTL_HOME": str(tmp_path / "home")})
    with session_scope(settings) as session:
        shards = [(s.path, s.sha256, s.n_segments, s.feature_version) for s in session.query(Shard)]
    assert sorted(v for *_, v in shards) == sorted(sets)  # one chunk: one shard per feature set
    for path, sha, n, version in shards:
        with open_shard(Path(path), params=sets[version], sha256=sha) as reader:
            arrays = reader.read_arrays()
            assert {k: a.shape[1:] for k, a in arrays.items()} == sets[version].shapes
            assert all(len(a) == n == 3 for a in arrays.values())
        with h5py.File(path) as handle:
            assert handle.attrs["feature_version"] == version
