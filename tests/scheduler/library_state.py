"""What a run left in the database and on disk, in a form two runs can be compared by."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from db.engine import session_scope
from db.models import Batch, Job, Prediction, Segment, Shard, Track
from genrectl.settings import Settings

GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae"]
TRACK_FIELDS = ("status", "error", "content_hash", "note", "duration_s", "codec")


def save_tiny_model(path: Path) -> Path:
    """An untrained, seeded CNN with the default feature parameters: enough to compare runs."""
    import torch

    from worker.features.mel import FeatureParams
    from worker.models.cnn import build_model, get_normalisation, set_normalisation
    from worker.models.modelfile import save_model

    torch.manual_seed(0)
    model = build_model(arch="cnn", n_classes=len(GENRES))
    set_normalisation(model, mean=-40.0, std=20.0)
    save_model(
        path,
        model=model,
        arch="cnn",
        input_size="native",
        classes=GENRES,
        feature_params=FeatureParams().to_dict(),
        metrics={},
        normalisation=get_normalisation(model),
        training={"note": "seeded and untrained, for tests"},
    )
    return path


def library_state(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per track path: its row, its segments (index, start, mel) and its prediction."""
    from worker.features.mel import FeatureParams
    from worker.features.shards import open_shard

    params = FeatureParams()
    state: dict[str, dict[str, Any]] = {}
    with session_scope(settings) as session:
        for track in session.scalars(select(Track).order_by(Track.path)):
            state[track.path] = {f: getattr(track, f) for f in TRACK_FIELDS}
            state[track.path]["segments"] = []
            state[track.path]["prediction"] = None
        columns = (Track.path, Segment.feature_version, Segment.index, Segment.start_s)
        rows = session.execute(
            select(*columns, Segment.row, Shard.path, Shard.sha256)
            .join(Segment, Segment.track_id == Track.id)
            .join(Shard, Shard.id == Segment.shard_id)
            .order_by(Track.path, Segment.feature_version, Segment.index)
        ).all()
        for track_path, version, index, start_s, row, shard_path, sha in rows:
            with open_shard(Path(shard_path), params=params, sha256=sha) as reader:
                mel = reader.read([row])[0]
            state[track_path]["segments"].append((version, index, round(start_s, 3), mel))
        for track_path, prediction in session.execute(
            select(Track.path, Prediction).join(Prediction, Prediction.track_id == Track.id)
        ):
            state[track_path]["prediction"] = (prediction.genre, prediction.probabilities)
    return state


def assert_same_library(left: dict[str, dict[str, Any]], right: dict[str, dict[str, Any]]) -> None:
    assert sorted(left) == sorted(right)
    for path, a in left.items():
        b = right[path]
        assert {f: a[f] for f in TRACK_FIELDS} == {f: b[f] for f in TRACK_FIELDS}, path
        assert [s[:3] for s in a["segments"]] == [s[:3] for s in b["segments"]], path
        for (*_, mel_a), (*_, mel_b) in zip(a["segments"], b["segments"], strict=True):
            np.testing.assert_allclose(mel_a, mel_b, atol=1e-3, err_msg=path)
        assert (a["prediction"] is None) == (b["prediction"] is None), path
        if a["prediction"] is not None:
            assert a["prediction"][0] == b["prediction"][0], path
            np.testing.assert_allclose(a["prediction"][1], b["prediction"][1], atol=1e-4)


def assert_nothing_lost_or_duplicated(
    settings: Settings,
    batch_id: int,
    n_tracks: int,
    *,
    others: tuple[int, ...] = (),
    failed: tuple[str, ...] = (),
) -> None:
    """Every job of the batch (and of ``others``, batches of the same files) finished well,
    but for the tracks whose file names are in ``failed`` (featurizing failed, labelling
    cancelled); every good track has whole rows once per feature set the batch computes;
    every shard is used and passes its checksum; when the batch has a model, every good
    track has exactly one prediction of it."""
    from worker.features.featurize import batch_feature_sets
    from worker.features.shards import open_shard

    with session_scope(settings) as session:
        sets = {s.version: s for s in batch_feature_sets(session, batch_id)}
        batch = session.get(Batch, batch_id)
        assert batch is not None and batch.status == "done", batch_id
        model_id = batch.model_id
        tracks = list(session.scalars(select(Track)))
        assert len(tracks) == n_tracks + len(failed)
        bad = {t.id for t in tracks if Path(t.path).name in failed}
        assert {t.status for t in tracks if t.id in bad} <= {"failed"}
        good = [t for t in tracks if t.id not in bad]
        assert {t.status for t in good} == {"ok"}
        for one in (batch_id, *others):
            jobs = session.execute(
                select(Job.kind, Job.status, Job.track_id).where(Job.batch_id == one)
            ).all()
            outcome = Counter((kind, status) for kind, status, tid in jobs if tid not in bad)
            assert {status for _kind, status in outcome} == {"done"}, (one, outcome)
            featurized = outcome[("featurize", "done")]
            assert featurized == n_tracks or one in others, (one, outcome)
            for kind, status, tid in jobs:
                if tid in bad:
                    assert (kind, status) in (("featurize", "failed"), ("label", "cancelled"))
        for track in good:
            for version in sets:
                rows = [s.index for s in track.segments if s.feature_version == version]
                assert rows == list(range(len(rows))) and rows, (track.path, version)
        for shard in session.scalars(select(Shard)):
            assert shard.segments, f"shard {shard.path} is referenced by no segment"
            params = sets[shard.feature_version]
            with open_shard(Path(shard.path), params=params, sha256=shard.sha256) as r:
                assert r.n_segments == shard.n_segments
        if model_id is not None:
            labelled = Counter(
                session.scalars(select(Prediction.track_id).where(Prediction.model_id == model_id))
            )
            assert labelled == Counter(t.id for t in good), "every good track labelled once"
