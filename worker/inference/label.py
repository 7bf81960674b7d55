"""Label tracks with a model: batched over a shard's rows, ensembled per track.

The plain function behind the ``genrectl.infer_shard`` task (gpu queue; CPU fallback).
Idempotent: keyed by track + model, a second run replaces the same rows.

A track is ``unknown`` for one of two reasons, each recorded: it is not music at all (the
encoder's own classes say so; models on the reference mel cannot tell), or its genre is
unclear (the model's confidence is below GENRECTL_UNKNOWN_THRESHOLD).
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
from worker.features.encoder import EncoderParams
from worker.features.sets import FeatureSet, feature_set_from_dict
from worker.features.shards import open_shard
from worker.inference.describe import EncoderView, describe
from worker.inference.predict import predict_rows, track_probabilities
from worker.models.device import resolve_device
from worker.models.encoders import class_names
from worker.models.heads import GenreHead
from worker.models.modelfile import LoadedModel, load_model

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
    """A track's answer: ``genre`` is ``unknown`` when the track is not music or its
    ``confidence`` is below the threshold, and ``reason`` then says which. ``music`` and
    ``tags`` are the encoder's view (None for models on the reference mel)."""

    genre: str
    top_genre: str
    confidence: float
    top3: list[tuple[str, float]]
    probabilities: list[float]
    reason: str | None = None
    music: float | None = None
    tags: list[tuple[str, float]] | None = None


def label_from_probabilities(
    probs: np.ndarray, classes: list[str], *, threshold: float, view: EncoderView | None = None
) -> Label:
    """``probs`` [C] (mean of a track's segment probabilities) -> Label."""
    order = np.argsort(-probs)
    top = classes[int(order[0])]
    confidence = float(probs[order[0]])
    reason = None
    if view is not None and not view.is_music:
        reason = view.reason
    elif confidence < threshold:
        reason = f"unclear genre: {top} {confidence:.0%} is below the {threshold:.0%} threshold"
    return Label(
        genre=UNKNOWN if reason else top,
        top_genre=top,
        confidence=round(confidence, 6),
        top3=[(classes[int(i)], round(float(probs[i]), 6)) for i in order[:3]],
        probabilities=[round(float(p), 6) for p in probs],
        reason=reason,
        music=None if view is None else view.music,
        tags=None if view is None else view.tags,
    )


def rows_needed(loaded: LoadedModel, feature_set: FeatureSet) -> list[str]:
    """The stored arrays labelling reads: the model's input, and an encoder's class logits
    (for "is it music?" and the track's other classes)."""
    if not isinstance(loaded.model, GenreHead):
        return ["mel"]
    extra = ["logits"] if "logits" in feature_set.shapes else []
    return sorted({*loaded.model.needs, *extra})


def label_rows(
    loaded: LoadedModel, arrays: dict[str, np.ndarray], track_ids: np.ndarray, *, settings: Settings
) -> dict[int, Label]:
    """Labels of the tracks whose rows (segments or windows) are ``arrays``, ``track_ids``
    [N] saying whose each row is."""
    probs = predict_rows(loaded.model, arrays, device=resolve_device(settings.device))
    per_track = track_probabilities(probs, track_ids)
    views = _views(loaded, arrays, track_ids)
    return {
        tid: label_from_probabilities(
            p, loaded.classes, threshold=settings.unknown_threshold, view=views.get(tid)
        )
        for tid, p in per_track.items()
    }


def _views(
    loaded: LoadedModel, arrays: dict[str, np.ndarray], track_ids: np.ndarray
) -> dict[int, EncoderView]:
    feature_set = feature_set_from_dict(loaded.feature_params)
    if not isinstance(feature_set, EncoderParams) or "logits" not in arrays:
        return {}
    names = class_names(feature_set.encoder)
    sigmoid = 1.0 / (1.0 + np.exp(-np.asarray(arrays["logits"], dtype=np.float64)))
    mapped = _mapped_classes(loaded.model, names)
    return {
        tid: describe(p, names, genre_classes=mapped)
        for tid, p in track_probabilities(sigmoid, track_ids).items()
    }


def _mapped_classes(model: object, names: tuple[str, ...]) -> list[str]:
    if not isinstance(model, GenreHead):
        return []
    used = model.prior_map.any(dim=0).nonzero().flatten().tolist()
    return [names[i] for i in used]


def infer_shard(
    settings: Settings, *, shard_id: int, model_id: int, track_ids: list[int] | None = None
) -> int:
    """Predict every (or the given) track of one shard with one model; returns tracks labelled."""
    with session_scope(settings) as session:
        model = session.get(Model, model_id)
        shard = session.get(Shard, shard_id)
        if model is None or shard is None:
            raise NotFoundError(f"model {model_id} or shard {shard_id} no longer exists")
        query = select(Segment.row, Segment.track_id).where(
            Segment.shard_id == shard_id, Segment.feature_version == model.feature_version
        )
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
    feature_set = feature_set_from_dict(loaded.feature_params)
    with open_shard(Path(shard_path), params=feature_set, sha256=shard_sha) as reader:
        arrays = reader.read_arrays([r for r, _ in rows], names=rows_needed(loaded, feature_set))
    owners = np.asarray([t for _, t in rows], dtype=np.int64)
    labels = label_rows(loaded, arrays, owners, settings=settings)
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
                    "reason": label.reason,
                    "music": label.music,
                    "tags": [list(pair) for pair in label.tags] if label.tags else None,
                }
                for tid, label in labels.items()
            ],
            index_elements=["track_id", "model_id"],
        )


def predict_file(path: Path, *, loaded: LoadedModel, settings: Settings) -> Label:
    """Label one audio file directly (decode, features, model), without the library."""
    from worker.features.compute import featurize_file

    feature_set = feature_set_from_dict(loaded.feature_params)
    featurized = featurize_file(
        path,
        sets=[feature_set],
        max_segments=settings.max_segments,
        min_seconds=settings.min_track_seconds,
    )
    rows = featurized.rows[feature_set.version]
    owners = np.zeros(len(rows.starts_s), dtype=np.int64)
    return label_rows(loaded, rows.arrays, owners, settings=settings)[0]
