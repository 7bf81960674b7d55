"""Label tracks with a model: batched over a shard's rows, ensembled per track.

The plain function behind the ``genrectl.infer_shard`` task (gpu queue; CPU fallback).
Idempotent: keyed by track + model, a second run replaces the same rows; the label jobs of
the tracks it labels are done in the same transaction (scheduler.pipeline).

A track is ``unknown`` for one of two reasons, each recorded: it is not music at all (the
encoder's own classes say so; models on the reference mel cannot tell), or its genre is
unclear (the model's confidence is below GENRECTL_UNKNOWN_THRESHOLD; or, with
GENRECTL_PER_CLASS_THRESHOLDS=1 and a model that carries them, below the top genre's own
threshold, ``metrics["class_thresholds"]``, calibrated out of fold by
worker.training.thresholds: off by default, as it measured no better).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.albums import refresh_albums
from db.engine import session_scope
from db.models import Model, Prediction, Segment, Shard
from db.upsert import insert_ignore
from genrectl.errors import REPAIR_HINT, DecodeError, NotFoundError, ShardError
from genrectl.settings import Settings
from scheduler.pipeline import finish_label_jobs
from worker.features.encoder import LEVEL, EncoderParams
from worker.features.sets import FeatureSet, model_feature_sets
from worker.features.shards import open_shard
from worker.inference.describe import EncoderView, describe, track_level
from worker.inference.moods import record_moods
from worker.inference.predict import Rows, score_tracks
from worker.inference.vectors import store_track_vectors, track_vectors, with_vector_arrays
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
    threshold: float | None = None  # the one the top genre was held to


def class_thresholds(loaded: LoadedModel, settings: Settings) -> list[float] | None:
    """The model's per-class thresholds in its class order when they are asked for
    (``Settings.global_threshold_only``: GENRECTL_PER_CLASS_THRESHOLDS=1 and no
    GENRECTL_UNKNOWN_THRESHOLD set) and the model has them; else None."""
    found = loaded.metrics.get("class_thresholds") if loaded.metrics else None
    if settings.global_threshold_only or not isinstance(found, dict):
        return None
    return [float(found.get(c, settings.unknown_threshold)) for c in loaded.classes]


def label_from_probabilities(
    probs: np.ndarray,
    classes: list[str],
    *,
    threshold: float,
    view: EncoderView | None = None,
    thresholds: Sequence[float] | None = None,
) -> Label:
    """``probs`` [C] (mean of a track's segment probabilities) -> Label; the top genre is
    held to ``thresholds[top]`` where given (per class), else to ``threshold``."""
    order = np.argsort(-probs)
    top = classes[int(order[0])]
    confidence = float(probs[order[0]])
    if thresholds is not None:
        threshold = float(thresholds[int(order[0])])
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
        threshold=threshold,
    )


def rows_needed(loaded: LoadedModel, sets: Sequence[FeatureSet]) -> list[list[str]]:
    """Per feature set of the model, the stored arrays labelling reads: the model's inputs,
    and mn04's logits and levels (for "is it music?" and the track's other classes)."""
    if not isinstance(loaded.model, GenreHead):
        return [["mel"]]
    out = []
    for position, feature_set in enumerate(sets):
        names = set(loaded.model.needs(position))
        if isinstance(feature_set, EncoderParams) and feature_set.encoder == "mn04":
            names |= {"logits", LEVEL}
        if isinstance(feature_set, EncoderParams) and "logits" in feature_set.outputs:
            names.add("logits")  # the track's moods (worker.inference.moods)
        out.append(sorted(names))
    return out


def label_tracks(
    loaded: LoadedModel, rows: Sequence[Rows], *, settings: Settings
) -> dict[int, Label]:
    """Labels of the tracks whose rows (per feature set of the model, in its order) are
    ``rows``."""
    probs = score_tracks(loaded.model, rows, device=resolve_device(settings.device))
    views = _views(loaded, rows)
    per_class = class_thresholds(loaded, settings)
    return {
        tid: label_from_probabilities(
            p,
            loaded.classes,
            threshold=settings.unknown_threshold,
            view=views.get(tid),
            thresholds=per_class,
        )
        for tid, p in probs.items()
    }


def _views(loaded: LoadedModel, rows: Sequence[Rows]) -> dict[int, EncoderView]:
    """mn04's view of each track, where the model reads mn04."""
    sets = model_feature_sets(loaded.feature_params)
    found = [
        (s, r)
        for s, r in zip(sets, rows, strict=True)
        if isinstance(s, EncoderParams) and s.encoder == "mn04" and "logits" in r.arrays
    ]
    if not found:
        return {}
    feature_set, part = found[0]
    names = class_names(feature_set.encoder)
    tracks = np.unique(part.owner)
    sigmoid = Rows({"p": 1 / (1 + np.exp(-part.arrays["logits"].astype(np.float64)))}, part.owner)
    means = sigmoid.means(tracks, ["p"])["p"]
    mapped = _mapped_classes(loaded.model, names)
    views = {}
    for i, track in enumerate(tracks.tolist()):
        level = track_level(part.arrays[LEVEL][part.owner == track])
        views[int(track)] = describe(means[i], names, level_db=level, genre_classes=mapped)
    return views


def _mapped_classes(model: object, names: tuple[str, ...]) -> list[str]:
    """mn04's classes the model's prior reads (its genre classes), left out of the tags."""
    if not isinstance(model, GenreHead) or not model.experts:
        return []
    used = model.prior_map(0).any(dim=0).nonzero().flatten().tolist()
    return [names[i] for i in used if i < len(names)]


OnDamaged = Callable[[ShardError, int], None]  # (the shard's error, tracks it held back)


def read_rows(
    session: Session,
    track_ids: Sequence[int],
    sets: Sequence[FeatureSet],
    needed: Sequence[Sequence[str]],
    *,
    on_damaged: OnDamaged | None = None,
) -> list[Rows]:
    """The stored rows of ``track_ids`` for each of ``sets``, in track and segment order
    (from whichever shards hold them), with the arrays ``needed`` of each.

    A shard that fails its check (checksum, feature version, unreadable, missing) is marked
    damaged in the database; with ``on_damaged`` its tracks are left out of every set and
    ``on_damaged`` is told, else its ShardError is raised, naming `genrectl verify --repair`.
    """
    out, damaged = [], set()
    for feature_set, names in zip(sets, needed, strict=True):
        located = session.execute(
            select(Segment.track_id, Segment.row, Shard.id, Shard.path, Shard.sha256)
            .join(Shard, Shard.id == Segment.shard_id)
            .where(
                Segment.track_id.in_(list(track_ids)),
                Segment.feature_version == feature_set.version,
            )
            .order_by(Segment.track_id, Segment.index)
        ).all()
        by_shard: dict[tuple[int, str, str], list[int]] = {}
        for position, (_, _, shard_id, path, sha) in enumerate(located):
            by_shard.setdefault((shard_id, path, sha), []).append(position)
        arrays = {n: np.zeros((len(located), *feature_set.shapes[n]), np.float32) for n in names}
        for (shard_id, path, sha), positions in by_shard.items():
            try:
                with open_shard(Path(path), params=feature_set, sha256=sha) as reader:
                    read = reader.read_arrays([located[i][1] for i in positions], names=names)
            except ShardError as exc:
                held = {int(located[i][0]) for i in positions}
                _damaged(session, shard_id, exc, held, on_damaged)
                damaged |= held
                continue
            for name in names:
                arrays[name][positions] = read[name]
        out.append(Rows(arrays, np.asarray([r[0] for r in located], dtype=np.int64)))
    if damaged:
        kept = sorted(set(track_ids) - damaged)
        out = [rows.of(kept) for rows in out]
    return out


def _damaged(
    session: Session, shard_id: int, exc: ShardError, held: set[int], on_damaged: OnDamaged | None
) -> None:
    shard = session.get(Shard, shard_id)
    if shard is not None and shard.damaged != exc.reason:
        shard.damaged = exc.reason
    if on_damaged is None:
        raise ShardError(exc.path, f"{exc.reason}; {REPAIR_HINT}") from None
    on_damaged(exc, len(held))


def _log_damaged(exc: ShardError, tracks: int) -> None:
    log.warning("skipped %s (%d tracks not labelled); %s", exc, tracks, REPAIR_HINT)


def infer_shard(
    settings: Settings,
    *,
    shard_id: int,
    model_id: int,
    track_ids: list[int] | None = None,
    on_damaged: OnDamaged | None = None,
) -> int:
    """Label every (or the given) track of one shard with one model; returns tracks labelled.

    The shard holds the rows of the model's first feature set; the rows of its other
    feature sets are read from the shards that hold them (the same chunk wrote them). Tracks
    whose rows are in a damaged shard are skipped (``on_damaged`` is told; by default it is
    logged), and the rest are labelled.
    """
    with session_scope(settings) as session:
        model = session.get(Model, model_id)
        shard = session.get(Shard, shard_id)
        if model is None or shard is None:
            raise NotFoundError(f"model {model_id} or shard {shard_id} no longer exists")
        query = select(Segment.track_id).where(Segment.shard_id == shard_id).distinct()
        if track_ids is not None:
            query = query.where(Segment.track_id.in_(track_ids))
        tracks = sorted(session.scalars(query))
        model_path, model_sha = model.path, model.sha256
        if not tracks:
            return 0
        loaded = cached_model(model_path, model_sha)
        sets = model_feature_sets(loaded.feature_params)
        needed = with_vector_arrays(sets, rows_needed(loaded, sets))
        rows = read_rows(session, tracks, sets, needed, on_damaged=on_damaged or _log_damaged)
    if not len(rows[0]):
        return 0
    labels = label_tracks(loaded, rows, settings=settings)
    vectors = (sets, track_vectors(sets, rows))  # "more like this" (worker.inference.vectors)
    _store(settings, model_id, labels, settings.unknown_threshold, vectors)
    record_moods(settings, sets, rows)
    return len(labels)


def _store(
    settings: Settings,
    model_id: int,
    labels: dict[int, Label],
    threshold: float,
    vectors: tuple[Sequence[FeatureSet], dict[int, np.ndarray]] = ((), {}),
) -> None:
    with session_scope(settings) as session:
        store_track_vectors(session, *vectors)
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
                    "album_genre": label.genre,  # until its album is computed, below
                    "album_confidence": label.confidence,
                    "top3": [list(pair) for pair in label.top3],
                    "probabilities": label.probabilities,
                    "threshold": threshold if label.threshold is None else label.threshold,
                    "reason": label.reason,
                    "music": label.music,
                    "tags": [list(pair) for pair in label.tags] if label.tags else None,
                }
                for tid, label in labels.items()
            ],
            index_elements=["track_id", "model_id"],
        )
        finish_label_jobs(session, model_id, list(labels))
    # The albums of these tracks, with their new labels, once those are committed: in their
    # own transaction, so that two shards of one album never hold each other's new rows.
    with session_scope(settings) as session:
        model = session.get(Model, model_id)
        if model is not None:
            refresh_albums(
                session,
                model,
                list(labels),
                threshold=settings.unknown_threshold,
                explicit=settings.global_threshold_only,
            )


def predict_file(path: Path, *, loaded: LoadedModel, settings: Settings) -> Label:
    """Label one audio file directly (decode, features, model), without the library."""
    from worker.features.compute import featurize_file

    sets = model_feature_sets(loaded.feature_params)
    featurized = featurize_file(
        path,
        sets=sets,
        max_segments=settings.max_segments,
        min_seconds=settings.min_track_seconds,
    )
    rows = []
    for feature_set in sets:
        found = featurized.rows[feature_set.version]
        rows.append(Rows(found.arrays, np.zeros(len(found.starts_s), dtype=np.int64)))
    return label_tracks(loaded, rows, settings=settings)[0]


def predict_files(
    settings: Settings, *, model_path: str, model_sha256: str, model_name: str, files: list[Path]
) -> list[dict[str, Any]]:
    """``genrectl predict``'s answers, one dict per file (``error`` for one that cannot be
    decoded); runs in the warm worker when there is one (scheduler.warm)."""
    loaded = cached_model(model_path, model_sha256)
    results: list[dict[str, Any]] = []
    for file in files:
        try:
            label = predict_file(file, loaded=loaded, settings=settings)
        except DecodeError as exc:
            results.append({"path": str(file), "error": exc.reason})
            continue
        results.append(
            {
                "path": str(file),
                "genre": label.genre,
                "confidence": label.confidence,
                "top3": label.top3,
                "reason": label.reason,
                "music": label.music,
                "tags": label.tags,
                "model": model_name,
            }
        )
    return results
