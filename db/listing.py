"""Queries behind browsing: a track's *label* is the user's own genre when there is one
(``UserLabel``), else the promoted model's prediction. Every listing, playlist and count
goes through ``labelled_tracks`` so that the user's label wins everywhere.

Sorted by path or confidence, the database orders and cuts a page (``SQL_SORTS``); by the
sorts that compare case-folded text (artist, title, genre) every matching track is read and
sorted here. A rule's genre and confidence tests are index ranges (migration 0007), so that
a rule that selects 500 tracks of a million reads about 500 index entries.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, CompoundSelect, Select, and_, case, func, select, union_all
from sqlalchemy.orm import Session

from db.genretree import session_taxonomy
from db.models import Model, Prediction, Track, UserLabel
from db.moods import audio_filtered, has_audio_rule
from db.registry import promoted_model

UNKNOWN = "unknown"  # the model's answer below the unknown threshold (worker.inference.label)
USER, MODEL = "user", "model"


@dataclass(frozen=True)
class LabelledTrack:
    """A track with its label. ``genre`` is the user's label if any, else the model's."""

    id: int
    path: str
    status: str
    error: str | None
    duration_s: float | None
    artist: str | None
    title: str | None
    album: str | None
    genre_tag: str | None
    genre: str | None
    source: str | None  # "user", "model", or None when unlabelled
    user_genre: str | None
    model_genre: str | None
    confidence: float | None  # the model's, even where the user's label wins
    top3: list[list[Any]] | None
    model: str | None
    reason: str | None = None  # why the model's genre is "unknown"
    music: float | None = None  # the encoder's P(music), for models that have one
    tags: list[list[Any]] | None = None  # the encoder's strongest other classes
    note: str | None = None  # about the track itself (e.g. shorter than one window)
    canonical_genre: str | None = None  # ``genre`` in the genre tree (genrectl.taxonomy)
    genre_parents: tuple[str, ...] = ()  # its parents there, nearest first
    tempo_bpm: float | None = None
    energy: float | None = None
    moods: dict[str, float] | None = None  # mood -> score, where asked for (db.moods)
    # The model's label at album scope (db.albums) and the scope ``genre`` is read at.
    album_genre: str | None = None
    album_confidence: float | None = None
    scope: str = "track"

    @property
    def rank_confidence(self) -> float:
        """For filters and ordering: the user's own label counts as certain."""
        if self.source == USER:
            return 1.0
        confidence = self.album_confidence if self.scope == "album" else self.confidence
        return -1.0 if confidence is None else confidence

    @property
    def display_title(self) -> str:
        return self.title or os.path.splitext(os.path.basename(self.path))[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "status": self.status,
            "error": self.error,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 2),
            "artist": self.artist,
            "title": self.title,
            "album": self.album,
            "genre_tag": self.genre_tag,
            "genre": self.genre,
            "label_source": self.source,
            "user_genre": self.user_genre,
            "model_genre": self.model_genre,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "top3": self.top3,
            "model": self.model,
            "reason": self.reason,
            "music": None if self.music is None else round(self.music, 4),
            "tags": self.tags,
            "note": self.note,
            "canonical_genre": self.canonical_genre,
            "genre_parents": list(self.genre_parents),
            "tempo_bpm": self.tempo_bpm,
            "energy": self.energy,
            **({} if self.moods is None else {"moods": self.moods}),
            "album_genre": self.album_genre,
            "album_confidence": None
            if self.album_confidence is None
            else round(self.album_confidence, 4),
            "scope": self.scope,
        }


@dataclass(frozen=True)
class TrackFilter:
    """Which tracks: ``genres`` (effective label; a genre of the tree includes the genres
    below it), ``min_confidence`` (model labels only: the user's labels always pass),
    ``unknown`` (the model could not decide and the user has not labelled), ``statuses``,
    ``ids``; ``moods`` (any of them), ``min_energy``, ``tempo`` (BPM range): db.moods."""

    genres: Sequence[str] = ()
    min_confidence: float | None = None
    unknown: bool = False
    statuses: Sequence[str] = ()
    ids: Sequence[int] = ()
    moods: Sequence[str] = ()
    min_energy: float | None = None
    tempo: tuple[float, float] | None = None
    scope: str = "track"  # "album": the model's label at album scope (db.albums)


def _model_label(scope: str) -> tuple[Any, Any]:
    """The prediction's (genre, confidence) columns a label at ``scope`` reads: at album
    scope the album's (a new prediction's own until its album is computed: label._store
    and migration 13b2a1b0c0d2 fill it so, and the index reads it as it is)."""
    if scope == "album":
        return Prediction.album_genre, Prediction.album_confidence
    return Prediction.genre, Prediction.confidence


def normalize_genre(genre: str) -> str:
    """Genres compare lower-cased and trimmed, as model classes are."""
    return " ".join(genre.split()).lower()


def _not_user_labelled() -> ColumnElement[bool]:
    """The prediction's track has no label of yours (yours then decides)."""
    return ~select(UserLabel.id).where(UserLabel.track_id == Prediction.track_id).exists()


def _matching_ids(model_id: int, rule: TrackFilter) -> Select[int] | CompoundSelect[int] | None:
    """Ids of the tracks whose label passes the rule's genre, confidence and unknown tests:
    the user's labels, and the model's predictions of tracks the user has not labelled.

    Each half is a range of one index (user_labels.genre; predictions by model, genre and
    confidence), so a rule that selects 500 tracks reads about 500 index entries: the same
    test written on the joined row (``coalesce(user, model) IN ...``) can use no index and
    reads the whole library."""
    if not (rule.genres or rule.unknown or rule.min_confidence is not None):
        return None
    genres = [normalize_genre(g) for g in rule.genres]
    model_genre, model_confidence = _model_label(rule.scope)
    unlabelled = _not_user_labelled()
    by_model = select(Prediction.track_id).where(Prediction.model_id == model_id, unlabelled)
    if genres:
        by_model = by_model.where(model_genre.in_(genres))
    if rule.unknown:
        return by_model.where(model_genre == UNKNOWN)  # the user's label is never unknown
    if rule.min_confidence is not None:  # the user's labels always pass
        by_model = by_model.where(model_confidence >= rule.min_confidence)
    by_user = select(UserLabel.track_id)
    if genres:
        by_user = by_user.where(UserLabel.genre.in_(genres))
    return union_all(by_user, by_model)


def _filtered(query: Select[Any], model_id: int, rule: TrackFilter) -> Select[Any]:
    """``query`` (over tracks) cut to the tracks ``rule`` selects."""
    if rule.ids:
        query = query.where(Track.id.in_(list(rule.ids)))
    if rule.statuses:
        query = query.where(Track.status.in_(list(rule.statuses)))
    query = audio_filtered(query, rule)
    matching = _matching_ids(model_id, rule)
    return query if matching is None else query.where(Track.id.in_(matching))


def _filtered_per_row(query: Select[Any], rule: TrackFilter) -> Select[Any]:
    """``query`` (tracks joined to their labels) cut to the tracks ``rule`` selects, by a
    test of each joined row: where the rule selects many tracks, a page in path order walks
    the path index and stops at the page's end, rather than gathering every match to sort."""
    model_genre, model_confidence = _model_label(rule.scope)
    genre = func.coalesce(UserLabel.genre, model_genre)
    if rule.ids:
        query = query.where(Track.id.in_(list(rule.ids)))
    if rule.statuses:
        query = query.where(Track.status.in_(list(rule.statuses)))
    query = audio_filtered(query, rule)
    if rule.genres:
        query = query.where(genre.in_([normalize_genre(g) for g in rule.genres]))
    if rule.unknown:
        query = query.where(UserLabel.genre.is_(None), model_genre == UNKNOWN)
    if rule.min_confidence is not None:
        confidence = case((UserLabel.genre.is_not(None), 1.0), else_=model_confidence)
        query = query.where(confidence >= rule.min_confidence)
    return query


def _selects_many(session: Session, model_id: int, rule: TrackFilter) -> bool:
    """Whether ``rule``'s labels select more than ``MANY`` tracks (reading at most that
    many index entries)."""
    matching = _matching_ids(model_id, rule)
    if matching is None:
        return True
    found = select(func.count()).select_from(matching.limit(MANY).subquery())
    return (session.scalar(found) or 0) >= MANY


def _rank_confidence(scope: str = "track") -> ColumnElement[float]:
    """``LabelledTrack.rank_confidence`` in SQL."""
    confidence = _model_label(scope)[1]
    return case((UserLabel.genre.is_not(None), 1.0), else_=func.coalesce(confidence, -1.0))


def _sql_order(sort: str, reverse: bool, scope: str = "track") -> list[ColumnElement[Any]]:
    """``SORT_KEYS[sort]`` as ORDER BY terms, for the sorts in ``SQL_SORTS``."""
    if sort == "path":
        return [Track.path.desc() if reverse else Track.path.asc()]
    rank = _rank_confidence(scope)
    return [rank.asc(), Track.path.desc()] if reverse else [rank.desc(), Track.path.asc()]


def _labels_query(model: Model | None, rule: TrackFilter, *, per_row: bool = False) -> Select[Any]:
    model_id = -1 if model is None else model.id
    query = (
        select(
            Track,
            UserLabel.genre,
            Prediction.genre,
            Prediction.confidence,
            Prediction.top3,
            Prediction.reason,
            Prediction.music,
            Prediction.tags,
            Prediction.album_genre,
            Prediction.album_confidence,
        )
        .outerjoin(UserLabel, UserLabel.track_id == Track.id)
        .outerjoin(
            Prediction, and_(Prediction.track_id == Track.id, Prediction.model_id == model_id)
        )
    )
    return _filtered_per_row(query, rule) if per_row else _filtered(query, model_id, rule)


def count_labelled(
    session: Session, rule: TrackFilter = TrackFilter(), *, model: Model | None = None
) -> int:
    """How many tracks ``labelled_tracks`` would return, counted by the database."""
    model_id = -1 if (model := model or promoted_model(session)) is None else model.id
    rule = expand_genres(session, rule)
    matching = _matching_ids(model_id, rule)
    if matching is not None and not (rule.ids or rule.statuses or has_audio_rule(rule)):
        # Every label belongs to a track (a foreign key): the two index ranges are the count.
        return session.scalar(select(func.count()).select_from(matching.subquery())) or 0
    query = select(func.count()).select_from(Track)
    return session.scalar(_filtered(query, model_id, rule)) or 0


def labelled_tracks(
    session: Session,
    rule: TrackFilter = TrackFilter(),
    *,
    model: Model | None = None,
    sort: str = "path",
    reverse: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[LabelledTrack]:
    """Tracks matching ``rule`` with their labels (``model``: default the promoted one),
    ordered by ``sort`` (one of ``SQL_SORTS``), from ``offset``, at most ``limit``: the
    database orders and cuts, so a page of a big library reads only that page's rows."""
    model = model or promoted_model(session)
    rule = expand_genres(session, rule)
    if sort == "confidence" and not reverse and limit is not None and model and rule.genres:
        # The most confident N of a big genre: only tracks at or above the N-th highest
        # confidence of the genre's predictions can be among them (your own labels rank
        # first and always pass), and that confidence is read off the predictions index;
        # if the rule's other tests leave fewer than N of those, the whole genre is sorted.
        floor = _confidence_floor(session, model.id, rule, limit + offset)
        if floor is not None:
            least = max(floor, rule.min_confidence or floor)
            found = _labelled(
                session, model, replace(rule, min_confidence=least), sort, reverse, limit, offset
            )
            if len(found) == limit:
                return found
    return _labelled(session, model, rule, sort, reverse, limit, offset)


def _confidence_floor(session: Session, model_id: int, rule: TrackFilter, n: int) -> float | None:
    """The ``n``-th highest confidence among the model's labels of the rule's genres (of
    tracks you have not labelled), or None when there are fewer."""
    model_genre, model_confidence = _model_label(rule.scope)
    unlabelled = _not_user_labelled()
    query = (
        select(model_confidence)
        .where(
            Prediction.model_id == model_id,
            model_genre.in_([normalize_genre(g) for g in rule.genres]),
            unlabelled,
        )
        .order_by(model_confidence.desc())
        .offset(n - 1)
        .limit(1)
    )
    found = session.scalar(query)
    return None if found is None else float(found)


def _labelled(
    session: Session,
    model: Model | None,
    rule: TrackFilter,
    sort: str,
    reverse: bool,
    limit: int | None,
    offset: int,
) -> list[LabelledTrack]:
    name = None if model is None else model.name
    taxonomy = session_taxonomy(session)
    walk = sort == "path" and limit is not None
    per_row = walk and _selects_many(session, -1 if model is None else model.id, rule)
    order = _sql_order(sort, reverse, rule.scope)
    query = _labels_query(model, rule, per_row=per_row).order_by(*order)
    out = []
    for row in session.execute(query.limit(limit).offset(offset or None)):
        track, user_genre, model_genre, confidence, top3, reason, music, tags = row[:8]
        album_genre, album_confidence = row[8:]
        source = USER if user_genre else MODEL if model_genre else None
        scoped = album_genre if rule.scope == "album" and album_genre else model_genre
        genre = user_genre or scoped
        canonical = None if genre is None else taxonomy.canonical(genre)
        out.append(
            LabelledTrack(
                id=track.id,
                path=track.path,
                status=track.status,
                error=track.error,
                duration_s=track.duration_s,
                artist=track.artist,
                title=track.title,
                album=track.album,
                genre_tag=track.genre_tag,
                genre=genre,
                source=source,
                user_genre=user_genre,
                model_genre=model_genre,
                confidence=confidence,
                top3=top3,
                model=name if model_genre else None,
                reason=reason,
                music=music,
                tags=tags,
                note=track.note,
                canonical_genre=canonical,
                genre_parents=() if canonical is None else tuple(taxonomy.parents(canonical)),
                tempo_bpm=track.tempo_bpm,
                energy=track.energy,
                album_genre=album_genre,
                album_confidence=album_confidence,
                scope=rule.scope,
            )
        )
    return out


def expand_genres(session: Session, rule: TrackFilter) -> TrackFilter:
    """``rule`` with each genre replaced by the raw classes of it and the genres below it in
    the session's genre tree ("rock" -> "rock", "metal", "heavy metal", "punk"...): still one
    index range per class."""
    if not rule.genres:
        return rule
    return replace(rule, genres=tuple(session_taxonomy(session).expand(rule.genres)))


def _text_key(value: str | None) -> tuple[bool, str]:
    return (value is None, (value or "").casefold())


SORT_KEYS: dict[str, Callable[[LabelledTrack], Any]] = {
    "path": lambda t: t.path,
    "artist": lambda t: (_text_key(t.artist), _text_key(t.album), t.display_title.casefold()),
    "title": lambda t: (t.display_title.casefold(), _text_key(t.artist)),
    "genre": lambda t: (_text_key(t.genre), -t.rank_confidence),
    "confidence": lambda t: (-t.rank_confidence, t.path),
}
# The sorts the database does itself, by an index: the others compare case-folded text and
# titles taken from file names, which no index orders. Paths compare in the database's
# collation: byte-wise (as Python compares them) in SQLite and a C-collated PostgreSQL, by
# language rules in one created with a locale (the compose service's en_US.utf8).
SQL_SORTS = ("path", "confidence")
# Above this many matches a page in path order walks the path index (see _filtered_per_row).
MANY = 2_000


def track_page(
    session: Session,
    rule: TrackFilter,
    *,
    sort: str = "path",
    reverse: bool = False,
    limit: int | None = None,
    offset: int = 0,
    model: Model | None = None,
) -> list[LabelledTrack]:
    """Tracks matching ``rule`` ordered by ``sort`` (a key of ``SORT_KEYS``), from
    ``offset``, at most ``limit`` of them."""
    if sort in SQL_SORTS:
        return labelled_tracks(
            session, rule, model=model, sort=sort, reverse=reverse, limit=limit, offset=offset
        )
    found = labelled_tracks(session, rule, model=model)
    found.sort(key=SORT_KEYS[sort], reverse=reverse)
    return found[offset : None if limit is None else offset + limit]


def matching_ids(
    session: Session, rule: TrackFilter = TrackFilter(), *, model: Model | None = None
) -> list[int]:
    """The ids of the tracks ``labelled_tracks`` would return, read from the indexes alone
    (for ``db.similar``, which ranks them itself)."""
    model_id = -1 if (model := model or promoted_model(session)) is None else model.id
    return list(session.scalars(_filtered(select(Track.id), model_id, rule)))
