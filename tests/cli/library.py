"""A labelled library without training: track, model and prediction rows written directly.

``seed_library`` gives a migrated embedded home (the one the ``genrectl`` fixture uses) with
tracks labelled by a registered, promoted model. ``add_featurized`` adds real shard rows
and a tiny real model for commands that run the model (``show``, ``relabel``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from db.engine import session_scope
from db.migrate import upgrade
from db.models import Model, Prediction, Segment, Shard, Track, TrackStatus
from genrectl.settings import Settings

GENRES = ["blues", "classical", "jazz", "metal", "pop"]
THRESHOLD = 0.35
# The feature version of the seeded tracks' rows, which have no shard file behind them: no
# model reads them. ``seed_library(..., as_featurized=True)`` gives them the seeded model's
# own feature version instead, so that ingest sees the tracks as featurized.
SEEDED_VERSION = "seeded"


@dataclass(frozen=True)
class Song:
    """One track of the seeded library; ``genre`` is the model's top genre."""

    path: str
    genre: str
    confidence: float
    artist: str | None = None
    title: str | None = None
    album: str | None = None
    duration_s: float | None = 30.0
    genre_tag: str | None = None
    status: str = TrackStatus.OK


def home_settings(tmp_path: Path) -> Settings:
    """The settings the ``genrectl`` fixture's CLI sees, with the schema at head."""
    settings = Settings.from_env({"GENRECTL_HOME": str(tmp_path / "home")})
    upgrade(settings)
    return settings


def add_model(
    settings: Settings,
    *,
    name: str = "test-model",
    classes: list[str] | None = None,
    promoted: bool = True,
    metrics: dict[str, Any] | None = None,
) -> int:
    """A model row with no file behind it (enough for everything that reads predictions)."""
    from worker.features.mel import FeatureParams

    with session_scope(settings) as session:
        model = Model(
            name=name,
            arch="cnn",
            classes=classes or GENRES,
            feature_version=FeatureParams().version,
            feature_params=FeatureParams().to_dict(),
            path=str(settings.model_dir / f"{name}.pt"),
            sha256="0" * 64,
            metrics=metrics or {},
            promoted=promoted,
        )
        session.add(model)
        session.flush()
        return model.id


def _stamp(path: str) -> tuple[int, int]:
    try:
        info = os.stat(path)
    except OSError:
        return 1000, 1
    return info.st_size, info.st_mtime_ns


def add_songs(
    settings: Settings, songs: list[Song], *, model_id: int | None, version: str = SEEDED_VERSION
) -> dict[str, int]:
    """Track rows (and the model's prediction for each OK one); returns path -> track id."""

    ids: dict[str, int] = {}
    with session_scope(settings) as session:
        shard = Shard(
            path=str(settings.shard_dir / "seeded.h5"),
            sha256="0" * 64,
            feature_version=version,
            n_segments=0,
        )
        session.add(shard)
        session.flush()
        for song in songs:
            size, mtime = _stamp(song.path)
            track = Track(
                path=song.path,
                size=size,
                mtime_ns=mtime,
                content_hash=f"{len(ids):064x}",
                status=song.status,
                error="cannot decode: broken" if song.status == TrackStatus.FAILED else None,
                duration_s=song.duration_s,
                artist=song.artist,
                title=song.title,
                album=song.album,
                genre_tag=song.genre_tag,
            )
            session.add(track)
            session.flush()
            ids[song.path] = track.id
            if song.status == TrackStatus.OK:
                session.add(
                    Segment(
                        track_id=track.id,
                        shard_id=shard.id,
                        feature_version=version,
                        row=0,
                        index=0,
                        start_s=0.0,
                    )
                )
            if model_id is not None and song.status == TrackStatus.OK:
                session.add(prediction(track.id, model_id, song.genre, song.confidence))
    return ids


def prediction(track_id: int, model_id: int, genre: str, confidence: float) -> Prediction:
    others = [g for g in GENRES if g != genre]
    rest = (1 - confidence) / 2
    return Prediction(
        track_id=track_id,
        model_id=model_id,
        genre=genre if confidence >= THRESHOLD else "unknown",
        top_genre=genre,
        confidence=confidence,
        top3=[[genre, confidence], [others[0], rest], [others[1], rest]],
        probabilities=[confidence if g == genre else rest / 2 for g in GENRES],
        threshold=THRESHOLD,
    )


def seed_library(
    tmp_path: Path, songs: list[Song], *, as_featurized: bool = False, **model: Any
) -> tuple[Settings, dict[str, int]]:
    from worker.features.mel import FeatureParams

    settings = home_settings(tmp_path)
    model_id = add_model(settings, **model)
    version = FeatureParams().version if as_featurized else SEEDED_VERSION
    return settings, add_songs(settings, songs, model_id=model_id, version=version)


def add_featurized(settings: Settings, track_ids: list[int], *, segments: int = 3) -> None:
    """Random mel segments of ``track_ids`` in a real shard, and a tiny real CNN (3 genres)
    registered and promoted: enough for ``show`` and ``relabel`` to run the model."""
    import numpy as np
    import torch

    from cli.models import register_model_file
    from db.registry import promote
    from worker.features.mel import FeatureParams
    from worker.features.shards import write_shard
    from worker.models.cnn import build_model
    from worker.models.modelfile import save_model

    params = FeatureParams()
    rng = np.random.default_rng(0)
    n = len(track_ids) * segments
    info = write_shard(
        directory=settings.shard_dir,
        arrays={"mel": rng.uniform(-80, 0, (n, params.n_mels, params.n_frames)).astype(np.float32)},
        track_ids=np.repeat(track_ids, segments),
        segment_index=np.tile(np.arange(segments), len(track_ids)),
        start_s=np.tile(np.arange(segments) * 6.0, len(track_ids)),
        params=params,
    )
    with session_scope(settings) as session:
        session.execute(delete(Segment).where(Segment.track_id.in_(track_ids)))
        shard = Shard(
            path=str(info.path),
            sha256=info.sha256,
            feature_version=params.version,
            n_segments=n,
        )
        session.add(shard)
        session.flush()
        for row in range(n):
            session.add(
                Segment(
                    track_id=track_ids[row // segments],
                    shard_id=shard.id,
                    feature_version=params.version,
                    row=row,
                    index=row % segments,
                    start_s=6.0 * (row % segments),
                )
            )
    classes = ["blues", "jazz", "metal"]
    file = settings.home / "tiny.pt"
    torch.manual_seed(0)
    save_model(
        file,
        model=build_model(arch="cnn", n_classes=len(classes)),
        arch="cnn",
        input_size="native",
        classes=classes,
        feature_params=params.to_dict(),
        metrics={},
        normalisation={},
        training={},
    )
    registered = register_model_file(settings, file, name="tiny")
    with session_scope(settings) as session:
        model = session.scalar(select(Model).where(Model.id == registered.id))
        assert model is not None
        promote(session, model)
