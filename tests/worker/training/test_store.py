"""Training from the library: a damaged library shard is skipped with one warning naming it
and `verify --repair`, and its tracks are decoded from their audio instead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from db.engine import dispose_engines, session_scope
from db.migrate import upgrade
from db.models import Shard
from genrectl.files import file_sha256
from genrectl.settings import Settings
from tests.scheduler.cluster import write_library
from worker.features.mel import FeatureParams
from worker.features.shards import write_shard
from worker.training.store import FeatureStore, TrainingTrack


def test_a_damaged_library_shard_is_skipped_once_and_its_tracks_decoded(tmp_path: Path) -> None:
    settings = Settings.from_env({"GENRECTL_HOME": str(tmp_path / "home")})
    upgrade(settings)
    params = FeatureParams()
    audio = write_library(tmp_path / "music", 2, seconds=7.0)
    info = write_shard(
        directory=settings.shard_dir,
        arrays={"mel": np.zeros((2, params.n_mels, params.n_frames), np.float32)},
        track_ids=np.array([1, 2]),
        segment_index=np.array([0, 0]),
        start_s=np.array([0.0, 0.0]),
        params=params,
    )
    try:
        with session_scope(settings) as session:
            session.add(
                Shard(
                    path=str(info.path),
                    sha256=info.sha256,
                    feature_version=params.version,
                    n_segments=2,
                )
            )
        info.path.write_bytes(info.path.read_bytes()[:-16] + b"\xff" * 16)  # damaged
        tracks = [
            TrainingTrack(
                f"t{i}",
                "rock",
                path,
                file_sha256(path),
                {params.version: ((str(info.path), info.sha256, i),)},
            )
            for i, path in enumerate(audio)
        ]
        warnings: list[str] = []
        store = FeatureStore(settings, params, warn=warnings.append)
        wanted = [(t, 0) for t in tracks]
        store.prepare(wanted)
        first = store.arrays(wanted)
        second = store.arrays(wanted)  # the shard is known damaged now: no second warning
        assert len(warnings) == 1
        assert f"'{info.path}'" in warnings[0] and "checksum mismatch" in warnings[0]
        assert "decoded from their audio" in warnings[0] and "verify --repair" in warnings[0]
        for arrays in (*first, *second):
            assert arrays is not None and arrays["mel"].shape == (1, params.n_mels, params.n_frames)
            assert np.abs(arrays["mel"]).max() > 0  # the audio's mel, not the shard's zeros
        with session_scope(settings) as session:  # labelling skips it until repaired
            assert (session.scalar(select(Shard.damaged)) or "").startswith("checksum mismatch")
    finally:
        dispose_engines()
