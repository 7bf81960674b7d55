"""Moods of tracks from their encoders' stored class logits, written when they are labelled.

``infer_shard`` reads each track's rows for its model; where those include mn04's AudioSet
logits and msd_fcn's Last.fm tag logits, each mood of ``genrectl.moods.MOOD_CLASSES`` is
scored from them (the largest of its classes' probabilities, each the mean over the track's
windows of the sigmoid of its logit) and stored in ``track_moods``, one row per track and
mood, replacing the track's earlier rows. A model on the reference mel reads no encoder:
its tracks get no moods. Costs a few array reads per shard: the logits are already read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import delete

from db.engine import session_scope
from db.models import TrackMood
from db.upsert import insert_ignore
from genrectl.moods import MOOD_CLASSES
from genrectl.settings import Settings
from worker.features.encoder import EncoderParams
from worker.features.sets import FeatureSet
from worker.inference.predict import Rows
from worker.models.encoders import class_names


def encoder_probabilities(
    sets: Sequence[FeatureSet], rows: Sequence[Rows]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """encoder -> (track ids ``[T]``, mean class probabilities ``[T, C]``), for the encoder
    feature sets whose logits ``rows`` hold."""
    out = {}
    for feature_set, part in zip(sets, rows, strict=True):
        if not isinstance(feature_set, EncoderParams) or "logits" not in part.arrays:
            continue
        if feature_set.encoder in out or not len(part):
            continue
        tracks = np.unique(part.owner)
        logits = part.arrays["logits"].astype(np.float64)
        probs = Rows({"p": 1 / (1 + np.exp(-logits))}, part.owner).means(tracks, ["p"])["p"]
        out[feature_set.encoder] = (tracks, probs)
    return out


def mood_scores(sets: Sequence[FeatureSet], rows: Sequence[Rows]) -> dict[int, dict[str, float]]:
    """track id -> mood -> score in 0..1, for the moods the rows' encoders can tell."""
    found = encoder_probabilities(sets, rows)
    scores: dict[int, dict[str, float]] = {}
    for encoder, (tracks, probs) in found.items():
        index = {name: i for i, name in enumerate(class_names(encoder))}
        for mood, by_encoder in MOOD_CLASSES.items():
            columns = [index[c] for c in by_encoder.get(encoder, ()) if c in index]
            if not columns:
                continue
            best = probs[:, columns].max(axis=1)
            for track, value in zip(tracks.tolist(), best.tolist(), strict=True):
                held = scores.setdefault(int(track), {})
                held[mood] = round(max(held.get(mood, 0.0), float(value)), 4)
    return scores


def store_moods(settings: Settings, scores: dict[int, dict[str, float]]) -> None:
    """Replace the stored moods of the tracks of ``scores`` (idempotent)."""
    if not scores:
        return
    with session_scope(settings) as session:
        session.execute(delete(TrackMood).where(TrackMood.track_id.in_(list(scores))))
        insert_ignore(
            session,
            TrackMood,
            [
                {"track_id": track, "mood": mood, "score": score}
                for track, by_mood in scores.items()
                for mood, score in by_mood.items()
            ],
            index_elements=["track_id", "mood"],
        )


def record_moods(settings: Settings, sets: Sequence[FeatureSet], rows: Sequence[Rows]) -> None:
    """Score and store the moods of the tracks of ``rows`` (``infer_shard``'s store step)."""
    store_moods(settings, mood_scores(sets, rows))
