"""Album consistency: one genre per album, unless a track clearly disagrees.

An **album** is the tracks sharing an album key: the album artist (else the artist) and the
album tag, case-folded; a track without an album tag falls back to its folder. A folder of
more than ``MAX_FOLDER_TRACKS`` untagged tracks is a pile of singles, not an album: its
tracks keep their own labels.

The **album's genre** is the argmax of the duration-weighted mean of its tracks'
probability vectors (``combine``; each track weighs its seconds of audio up to 30 s, what the
encoders hear of it). A track the user labelled counts as a one-hot vector of its label, and
a track that is not music adds nothing. The album is "unclear" (and every track keeps its
own label) when that mean's top probability is below the top class's threshold, as for a
track. bench/bench_albums.py measured the mean against a product of experts (summed log
probabilities) and an unweighted mean out of fold (BENCHMARKS.md "Albums and per-class
thresholds").

The **disagreement rule**: a track keeps its own label when it is a genre (not unknown),
differs from the album's, and its own probability of its genre exceeds its probability of
the album's genre by at least ``MARGIN`` (0.5): a bonus track or a compilation's tracks
keep theirs; a track the model was unsure of (an unclear track, or one split between its
genre and the album's) takes the album's.

Stored per (model, album) in ``albums`` and per prediction in ``predictions.album_genre``
and ``album_confidence`` (the track's label at album scope), indexed like the track's own
label (migration 13b2a1b0c0d2), so that listings and playlists at album scope are index
ranges too. ``refresh_albums`` recomputes the albums a labelling run or a user's label
touched (worker.inference.label, cli.labels); it reads only those albums' tracks. Two
labelling runs that touch one album at once each recompute it from what is committed when
they read; the later writer wins (a relabel puts any stale album right).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, select, update
from sqlalchemy.orm import Session

from db.models import Album, Model, Prediction, Track, UserLabel, utcnow
from db.registry import promoted_model
from db.upsert import dialect_insert
from genrectl.settings import Settings

UNKNOWN = "unknown"
MARGIN = 0.5
MAX_FOLDER_TRACKS = 40
FULL_WEIGHT_S = 30.0
METHODS = ("mean", "mean-unweighted", "product")
METHOD = "mean"
SCOPES = ("track", "album")


def album_key(path: str, *, artist: str | None, album_artist: str | None, album: str | None) -> str:
    """The key tracks of one album share: ``tag:<album artist or artist>\\x1f<album>``,
    case-folded and trimmed, or ``dir:<folder>`` when the file has no album tag."""
    if album and album.strip():
        who = " ".join((album_artist or artist or "").split()).casefold()
        return f"tag:{who}\x1f{' '.join(album.split()).casefold()}"
    return f"dir:{os.path.dirname(path)}"


@dataclass(frozen=True)
class Evidence:
    """One track's part in its album: its model probabilities (class order), its label,
    how much audio they heard (seconds) and the user's label if any."""

    track_id: int
    probabilities: Sequence[float]
    genre: str
    confidence: float
    seconds: float | None
    user_genre: str | None = None
    not_music: bool = False


@dataclass(frozen=True)
class AlbumDecision:
    """An album's genre (``unknown`` when unclear), its confidence and probabilities, and
    each track's label at album scope: ``(genre, confidence, kept_own)``."""

    genre: str
    confidence: float
    probabilities: list[float]
    tracks: dict[int, tuple[str, float, bool]]


def combine(
    vectors: Sequence[Sequence[float]], weights: Sequence[float], *, method: str = METHOD
) -> list[float]:
    """One probability vector from a weighted set: ``mean`` (weighted mean),
    ``mean-unweighted`` or ``product`` (a product of experts: the weighted sum of log
    probabilities, floored at 1e-4, renormalised)."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} must be one of {', '.join(METHODS)}")
    n = len(vectors[0])
    if method == "mean-unweighted":
        weights = [1.0] * len(vectors)
    total = sum(weights) or 1.0
    if method == "product":
        logs = [
            sum(w * math.log(max(v[c], 1e-4)) for v, w in zip(vectors, weights, strict=True))
            / total
            for c in range(n)
        ]
        top = max(logs)
        exp = [math.exp(x - top) for x in logs]
        return [x / sum(exp) for x in exp]
    return [sum(w * v[c] for v, w in zip(vectors, weights, strict=True)) / total for c in range(n)]


def decide_album(
    evidence: Sequence[Evidence],
    classes: Sequence[str],
    thresholds: Sequence[float],
    *,
    method: str = METHOD,
    margin: float = MARGIN,
) -> AlbumDecision:
    """The album's genre from its tracks' ``evidence`` and each track's label at album
    scope, by the rules of the module docstring. ``thresholds`` per class (class order)."""
    index = {c: i for i, c in enumerate(classes)}
    vectors, weights = [], []
    for e in evidence:
        if e.user_genre is not None and e.user_genre in index:
            vectors.append([1.0 if c == e.user_genre else 0.0 for c in classes])
        elif e.not_music or e.user_genre is not None:
            continue
        else:
            vectors.append(list(e.probabilities))
        weights.append(min(e.seconds or FULL_WEIGHT_S, FULL_WEIGHT_S) / FULL_WEIGHT_S)
    own = {e.track_id: (e.genre, e.confidence, True) for e in evidence}
    if not vectors:
        return AlbumDecision(UNKNOWN, 0.0, [], own)
    probs = combine(vectors, weights, method=method)
    top = max(range(len(probs)), key=lambda i: probs[i])
    confidence = probs[top]
    if confidence < thresholds[top]:
        return AlbumDecision(UNKNOWN, confidence, probs, own)
    genre = classes[top]
    tracks = {}
    for e in evidence:
        if e.not_music or _disagrees(e, index, top, margin):
            tracks[e.track_id] = (e.genre, e.confidence, True)
        else:
            tracks[e.track_id] = (genre, confidence, False)
    return AlbumDecision(genre, confidence, probs, tracks)


def _disagrees(e: Evidence, index: dict[str, int], album: int, margin: float) -> bool:
    """The track's own evidence clearly says another genre than the album's."""
    if e.genre == UNKNOWN or e.genre not in index or index[e.genre] == album:
        return False
    return e.probabilities[index[e.genre]] - e.probabilities[album] >= margin


def class_thresholds(model: Model, *, threshold: float, explicit: bool) -> list[float]:
    """Per class of ``model``, the threshold its top genre is held to (as in labelling:
    the model's calibrated ``class_thresholds`` unless the user set one global
    ``threshold`` explicitly)."""
    found = (model.metrics or {}).get("class_thresholds")
    if explicit or not isinstance(found, dict):
        return [threshold] * len(model.classes)
    return [float(found.get(c, threshold)) for c in model.classes]


def refresh_albums(
    session: Session,
    model: Model,
    track_ids: Iterable[int],
    *,
    threshold: float,
    explicit: bool = False,
) -> int:
    """Recompute the albums of ``track_ids`` for ``model``: the ``albums`` rows and every
    one of their tracks' labels at album scope. Returns the albums recomputed."""
    keys = set(
        session.scalars(
            select(Track.album_key).where(
                Track.id.in_(list(track_ids)), Track.album_key.is_not(None)
            )
        )
    )
    if not keys:
        return 0
    thresholds = class_thresholds(model, threshold=threshold, explicit=explicit)
    rows = session.execute(
        select(
            Track.album_key,
            Track.duration_s,
            UserLabel.genre,
            Prediction.track_id,
            Prediction.probabilities,
            Prediction.genre,
            Prediction.confidence,
            Prediction.reason,
        )
        .join(Prediction, and_(Prediction.track_id == Track.id, Prediction.model_id == model.id))
        .outerjoin(UserLabel, UserLabel.track_id == Track.id)
        .where(Track.album_key.in_(sorted(keys)))
    ).all()
    by_album: dict[str, list[Evidence]] = {}
    for key, seconds, user, tid, probs, genre, confidence, reason in rows:
        by_album.setdefault(str(key), []).append(
            Evidence(
                tid,
                probs,
                genre,
                confidence,
                seconds,
                user_genre=user,
                not_music=bool(reason and reason.startswith("not music")),
            )
        )
    albums: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for key, evidence in by_album.items():
        if key.startswith("dir:") and len(evidence) > MAX_FOLDER_TRACKS:
            decision = AlbumDecision(
                UNKNOWN, 0.0, [], {e.track_id: (e.genre, e.confidence, True) for e in evidence}
            )
        else:
            decision = decide_album(evidence, model.classes, thresholds)
        albums.append(
            {
                "model_id": model.id,
                "key": key,
                "genre": decision.genre,
                "confidence": round(decision.confidence, 6),
                "probabilities": [round(p, 6) for p in decision.probabilities],
                "tracks": len(evidence),
                "updated_at": utcnow(),
            }
        )
        updates += [
            {"tid": tid, "g": genre, "c": confidence}
            for tid, (genre, confidence, _) in decision.tracks.items()
        ]
    # In key and track order: two runs on the same albums lock rows in the same order (they
    # wait for each other, they never deadlock on PostgreSQL).
    albums.sort(key=lambda a: str(a["key"]))
    updates.sort(key=lambda u: int(u["tid"]))
    _store(session, model.id, albums, updates)
    return len(albums)


def _store(
    session: Session, model_id: int, albums: list[dict[str, Any]], updates: list[dict[str, Any]]
) -> None:
    """Upsert the albums (two labelling runs of one album may race: the last one wins) and
    set their tracks' labels at album scope."""
    if albums:
        insert = dialect_insert(session)(Album.__table__)
        changed = {k: insert.excluded[k] for k in albums[0] if k not in ("model_id", "key")}
        session.execute(
            insert.on_conflict_do_update(index_elements=["model_id", "key"], set_=changed),
            albums,
        )
    if updates:
        table = cast(Table, Prediction.__table__)
        session.execute(
            update(table)
            .where(table.c.model_id == model_id, table.c.track_id == bindparam("tid"))
            .values(album_genre=bindparam("g"), album_confidence=bindparam("c")),
            updates,
        )


def refresh_albums_of(session: Session, track_ids: Sequence[int], settings: Settings) -> int:
    """``refresh_albums`` for the promoted model (after the user labelled ``track_ids``)."""
    model = promoted_model(session)
    if model is None:
        return 0
    return refresh_albums(
        session,
        model,
        track_ids,
        threshold=settings.unknown_threshold,
        explicit=settings.global_threshold_only,
    )


@dataclass(frozen=True)
class ScopedLabel:
    """A track's genre at a scope: ``source`` is ``user`` (the user's label, which always
    wins), ``album`` (the album's genre), ``track`` (its own, at track scope or because it
    clearly disagrees with its album) or None when not labelled."""

    genre: str | None
    confidence: float | None
    source: str | None


def scoped_labels(
    session: Session, track_ids: Sequence[int], *, scope: str, model: Model | None = None
) -> dict[int, ScopedLabel]:
    """Each of ``track_ids``'s label at ``scope`` (``track`` or ``album``), for ``model``
    (default: the promoted one). What ``tags write --scope`` writes."""
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r} must be track or album")
    model = model or promoted_model(session)
    model_id = -1 if model is None else model.id
    rows = session.execute(
        select(
            Track.id,
            UserLabel.genre,
            Prediction.genre,
            Prediction.confidence,
            Prediction.album_genre,
            Prediction.album_confidence,
        )
        .outerjoin(UserLabel, UserLabel.track_id == Track.id)
        .outerjoin(
            Prediction, and_(Prediction.track_id == Track.id, Prediction.model_id == model_id)
        )
        .where(Track.id.in_(list(track_ids)))
    ).all()
    out = {}
    for tid, user, genre, confidence, album_genre, album_confidence in rows:
        if user is not None:
            out[tid] = ScopedLabel(user, 1.0, "user")
        elif scope == "album" and album_genre is not None:
            own = album_genre == genre and album_confidence == confidence
            out[tid] = ScopedLabel(album_genre, album_confidence, "track" if own else "album")
        else:
            out[tid] = ScopedLabel(genre, confidence, "track" if genre else None)
    return out


def album_of(session: Session, track: Track, model: Model | None = None) -> Album | None:
    """The album row of ``track`` for ``model`` (default: the promoted one), if computed."""
    model = model or promoted_model(session)
    if model is None or track.album_key is None:
        return None
    return session.scalar(
        select(Album).where(Album.model_id == model.id, Album.key == track.album_key)
    )
