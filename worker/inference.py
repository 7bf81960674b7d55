"""Label tracks with a model: batched over a shard's segments, ensembled per track.

The plain function behind the ``genrectl.infer_shard`` task (gpu queue; CPU fallback).
Idempotent: keyed by track + model, a second run replaces the same rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import delete, select

from db.engine import session_scope
from db.models import Model, Prediction, Segment, Shard
from db.upsert import insert_ignore
from genrectl.errors import NotFoundError
from genrectl.settings import Settings
from worker.evaluation import predict_segments, track_probabilities
from worker.features import FeatureParams
from worker.modelfile import LoadedModel, load_model
from worker.shards import open_shard
from worker.training import resolve_device

log = logging.getLogger(__name__)

UNKNOWN = "unknown"

# One model per process, loaded once (a gpu worker keeps it on its device between tasks).
_cache: dict[tuple[str, str], LoadedModel] = {}


def cached_model(path: str, sha256: str) -> LoadedModel:
    key = (path, sha256)
    if key not in _cache:
        _cache.clear()
        _cache[key] = load_model(Path(path), expected_sha256=sha256)
    return _cache[key]


@dataclass(frozen=True)
class Label:
    """A track's answer: ``genre`` is ``unknown`` when ``confidence`` is below the threshold."""

    genre: str
    top_genre: str
    confidence: float
    top3: list[tuple[str, float]]
    probabilities: list[float]


def label_from_probabilities(probs: np.ndarray, classes: list[str], *, threshold: float) -> Label:
    """``probs`` [C] (mean of a track's segment probabilities) -> Label."""
    order = np.argsort(-probs)
    top = classes[int(order[0])]
    confidence = float(probs[order[0]])
    return Label(
        genre=top if confidence >= threshold else UNKNOWN,
        top_genre=top,
        confidence=round(confidence, 6),
        top3=[(classes[int(i)], round(float(probs[i]), 6)) for i in order[:3]],
        probabilities=[round(float(p), 6) for p in probs],
    )


def infer_shard(
    settings: Settings, *, shard_id: int, model_id: int, track_ids: list[int] | None = None
) -> int:
    """Predict every (or the given) track of one shard with one model; returns tracks labelled."""
    with session_scope(settings) as session:
        model = session.get(Model, model_id)
        shard = session.get(Shard, shard_id)
        if model is None or shard is None:
            raise NotFoundError(f"model {model_id} or shard {shard_id} no longer exists")
        query = select(Segment.row, Segment.track_id).where(Segment.shard_id == shard_id)
        if track_ids is not None:
            query = query.where(Segment.track_id.in_(track_ids))
        rows = sorted(session.execute(query).all())
        model_path, model_sha, shard_path, shard_sha = (
            model.path,
            model.sha256,
            shard.path,
            shard.sha256,
        )
    if not rows:
        return 0
    loaded = cached_model(model_path, model_sha)
    params = FeatureParams.from_dict(loaded.feature_params)
    with open_shard(Path(shard_path), params=params, sha256=shard_sha) as reader:
        mel = reader.read([r for r, _ in rows])
    probs = predict_segments(loaded.model, mel, device=resolve_device(settings.device))
    per_track = track_probabilities(probs, np.asarray([t for _, t in rows], dtype=np.int64))
    labels = {
        tid: label_from_probabilities(p, loaded.classes, threshold=settings.unknown_threshold)
        for tid, p in per_track.items()
    }
    _store(settings, model_id, labels, settings.unknown_threshold)
    return len(labels)


def _store(settings: Settings, model_id: int, labels: dict[int, Label], threshold: float) -> None:
    with session_scope(settings) as session:
        session.execute(
            delete(Prediction).where(
                Prediction.model_id == model_id, Prediction.track_id.in_(list(labels))
            )
        )
        insert_ignore(
            session,
            Prediction,
            [
                {
                    "track_id": tid,
                    "model_id": model_id,
                    "genre": label.genre,
                    "top_genre": label.top_genre,
                    "confidence": label.confidence,
                    "top3": [list(pair) for pair in label.top3],
                    "probabilities": label.probabilities,
                    "threshold": threshold,
                }
                for tid, label in labels.items()
            ],
            index_elements=["track_id", "model_id"],
        )


def predict_file(path: Path, *, loaded: LoadedModel, settings: Settings) -> Label:
    """Label one audio file directly (decode, segments, mel, model), without the library."""
    from worker.audio import load_segments
    from worker.features import mel_db

    params = FeatureParams.from_dict(loaded.feature_params)
    decoded = load_segments(
        path,
        params=params,
        max_segments=settings.max_segments,
        min_seconds=settings.min_track_seconds,
    )
    mel = mel_db(segments=decoded.audio, params=params)
    probs = predict_segments(loaded.model, mel, device=resolve_device(settings.device))
    return label_from_probabilities(
        probs.mean(axis=0), loaded.classes, threshold=settings.unknown_threshold
    )
