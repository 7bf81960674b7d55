"""HDF5 shards: round trip, atomic naming, and refusal of changed or foreign files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from genrectl.errors import ShardError
from worker.features.encoder import EncoderParams
from worker.features.mel import FeatureParams
from worker.features.shards import ShardInfo, file_sha256, open_shard, write_shard

PARAMS = FeatureParams()


def _columns(n: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "arrays": {"mel": rng.uniform(-80, 0, (n, 90, 130)).astype(np.float32)},
        "track_ids": np.repeat(np.arange(100, 100 + n // 2 + 1), 2)[:n],
        "segment_index": np.tile([0, 1], n)[:n],
        "start_s": np.tile([0.0, 6.0], n)[:n],
    }


def _write(directory: Path, n: int = 5, params: FeatureParams = PARAMS) -> ShardInfo:
    return write_shard(directory=directory, params=params, **_columns(n))


def test_round_trip(tmp_path: Path) -> None:
    columns = _columns(5)
    info = write_shard(directory=tmp_path / "shards", params=PARAMS, **columns)
    assert re.fullmatch(r"shard-[0-9a-f]{32}\.h5", info.path.name)
    assert [p.name for p in info.path.parent.iterdir()] == [info.path.name]  # no temp left
    assert info.n_segments == 5 and info.feature_version == PARAMS.version
    assert info.sha256 == file_sha256(info.path)
    with open_shard(info.path, params=PARAMS, sha256=info.sha256) as shard:
        assert shard.n_segments == 5
        mel = shard.read()
        assert mel.dtype == np.float32 and mel.shape == (5, 90, 130)
        np.testing.assert_allclose(mel, columns["arrays"]["mel"], atol=0.032)  # float16 at -80 dB
        np.testing.assert_array_equal(shard.track_ids, columns["track_ids"])
        assert shard.track_ids.dtype == np.int64 and shard.segment_index.dtype == np.int32
        np.testing.assert_array_equal(shard.segment_index, columns["segment_index"])
        np.testing.assert_array_equal(shard.start_s, np.float32(columns["start_s"]))
        np.testing.assert_array_equal(shard.read([4, 1, 4]), mel[[4, 1, 4]])
        assert shard.read([]).shape == (0, 90, 130)


def test_layout_on_disk(tmp_path: Path) -> None:
    info = _write(tmp_path)
    with h5py.File(info.path, "r") as handle:
        mel = handle["mel"]
        assert mel.dtype == np.float16 and mel.chunks == (1, 90, 130)
        assert mel.compression == "gzip"
        assert FeatureParams.from_dict(json.loads(handle.attrs["feature_params"])) == PARAMS
        assert handle.attrs["feature_version"] == PARAMS.version
        assert {name: handle[name].dtype for name in ("track_id", "segment_index", "start_s")} == {
            "track_id": np.int64,
            "segment_index": np.int32,
            "start_s": np.float32,
        }


def test_each_write_is_a_new_file(tmp_path: Path) -> None:
    assert _write(tmp_path).path != _write(tmp_path).path


def test_no_segments_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one segment"):
        _write(tmp_path, n=0)
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def test_mismatched_inputs_are_errors(tmp_path: Path) -> None:
    columns = _columns(4)
    with pytest.raises(ValueError, match=r"track_id shape \(3,\) must be \(4,\)"):
        write_shard(directory=tmp_path, params=PARAMS, **{**columns, "track_ids": np.arange(3)})
    with pytest.raises(ValueError, match=r"mel shape \(4, 64, 130\)"):
        write_shard(
            directory=tmp_path,
            params=PARAMS,
            **{**columns, "arrays": {"mel": np.zeros((4, 64, 130))}},
        )


def test_reading_rows_out_of_range(tmp_path: Path) -> None:
    info = _write(tmp_path)
    with open_shard(info.path, params=PARAMS, sha256=None) as shard, pytest.raises(IndexError):
        shard.read([5])


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    info = _write(tmp_path)
    with pytest.raises(ShardError, match="checksum mismatch") as caught:
        open_shard(info.path, params=PARAMS, sha256="0" * 64)
    assert caught.value.path == info.path


def test_other_feature_version_is_refused_naming_both(tmp_path: Path) -> None:
    info = _write(tmp_path)
    other = FeatureParams(top_db=60.0)
    with pytest.raises(ShardError) as caught:
        open_shard(info.path, params=other, sha256=info.sha256)
    assert PARAMS.version in caught.value.reason and other.version in caught.value.reason


def test_missing_shard(tmp_path: Path) -> None:
    with pytest.raises(ShardError, match="missing"):
        open_shard(tmp_path / "shard-gone.h5", params=PARAMS, sha256=None)


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_shard_is_refused(tmp_path: Path, keep: float) -> None:
    info = _write(tmp_path, n=20)
    data = info.path.read_bytes()
    info.path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ShardError, match="checksum mismatch"):
        open_shard(info.path, params=PARAMS, sha256=info.sha256)
    # Without a checksum, HDF5 itself notices that the file is shorter than it should be.
    with pytest.raises(ShardError, match="unreadable"):
        open_shard(info.path, params=PARAMS, sha256=None)


def test_an_hdf5_file_that_is_not_a_shard(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", data=np.arange(3))
    with pytest.raises(ShardError, match="not a genrectl shard"):
        open_shard(path, params=PARAMS, sha256=None)


def test_not_an_hdf5_file(tmp_path: Path) -> None:
    path = tmp_path / "shard-text.h5"
    path.write_text("hello")
    with pytest.raises(ShardError, match="unreadable"):
        open_shard(path, params=PARAMS, sha256=None)


def test_an_encoder_shard_holds_every_output_in_row_order(tmp_path: Path) -> None:
    params = EncoderParams()
    rng = np.random.default_rng(1)
    arrays = {
        name: rng.normal(size=(70, *shape)).astype(np.float32)
        for name, shape in params.shapes.items()
    }
    info = write_shard(
        directory=tmp_path,
        arrays=arrays,
        track_ids=np.repeat(np.arange(35), 2),
        segment_index=np.tile([0, 1], 35),
        start_s=np.tile([0.0, 10.0], 35),
        params=params,
    )
    with h5py.File(info.path, "r") as handle:
        assert handle["logits"].chunks == (64, 527)  # many rows per chunk: vectors are small
    rows = [69, 3, 3, 0]
    with open_shard(info.path, params=params, sha256=info.sha256) as shard:
        read = shard.read_arrays(rows)
        assert sorted(read) == sorted(params.shapes)
        for name, array in arrays.items():
            np.testing.assert_allclose(read[name], array[rows], rtol=1e-3, atol=1e-3)
        with pytest.raises(ShardError, match="feature version"):
            open_shard(info.path, params=PARAMS, sha256=None)
    with pytest.raises(ValueError, match=r"arrays \['logits'\] must be exactly"):
        write_shard(
            directory=tmp_path,
            arrays={"logits": arrays["logits"]},
            track_ids=np.zeros(70),
            segment_index=np.zeros(70),
            start_s=np.zeros(70),
            params=params,
        )
