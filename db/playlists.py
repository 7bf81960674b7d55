"""Queries behind browsing, labels and playlists.

A track's *label* is the user's own genre when there is one (``UserLabel``), else the
promoted model's prediction. Every listing, playlist and count goes through
``labelled_tracks`` so that the user's label wins everywhere.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, CompoundSelect, Select, and_, case, func, select, union_all
from sqlalchemy.orm import Session

from db.models import Model, Playlist, Prediction, Track, TrackStatus, UserLabel, utcnow
from db.registry import promoted_model
from genrectl.errors import NotFoundError

UNKNOWN = "unknown"  # the model's answer below the unknown threshold (worker.inference.label)
ORDERS = ("confidence", "random", "title", "artist")
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

    @property
    def rank_confidence(self) -> float:
        """For filters and ordering: the user's own label counts as certain."""
        if self.source == USER:
            return 1.0
        return -1.0 if self.confidence is None else self.confidence

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
        }


@dataclass(frozen=True)
class TrackFilter:
    """Which tracks: ``genres`` (effective label), ``min_confidence`` (model labels only:
    the user's labels always pass), ``unknown`` (the model could not decide and the user has
    not labelled), ``statuses``, ``ids``."""

    genres: Sequence[str] = ()
    min_confidence: float | None = None
    unknown: bool = False
    statuses: Sequence[str] = ()
    ids: Sequence[int] = ()


def normalize_genre(genre: str) -> str:
    """Genres compare lower-cased and trimmed, as model classes are."""
    return " ".join(genre.split()).lower()


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
    unlabelled = ~select(UserLabel.id).where(UserLabel.track_id == Prediction.track_id).exists()
    by_model = select(Prediction.track_id).where(Prediction.model_id == model_id, unlabelled)
    if genres:
        by_model = by_model.where(Prediction.genre.in_(genres))
    if rule.unknown:
        return by_model.where(Prediction.genre == UNKNOWN)  # the user's label is never unknown
    if rule.min_confidence is not None:  # the user's labels always pass
        by_model = by_model.where(Prediction.confidence >= rule.min_confidence)
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
    matching = _matching_ids(model_id, rule)
    return query if matching is None else query.where(Track.id.in_(matching))


def _filtered_per_row(query: Select[Any], rule: TrackFilter) -> Select[Any]:
    """``query`` (tracks joined to their labels) cut to the tracks ``rule`` selects, by a
    test of each joined row: where the rule selects many tracks, a page in path order walks
    the path index and stops at the page's end, rather than gathering every match to sort."""
    genre = func.coalesce(UserLabel.genre, Prediction.genre)
    if rule.ids:
        query = query.where(Track.id.in_(list(rule.ids)))
    if rule.statuses:
        query = query.where(Track.status.in_(list(rule.statuses)))
    if rule.genres:
        query = query.where(genre.in_([normalize_genre(g) for g in rule.genres]))
    if rule.unknown:
        query = query.where(UserLabel.genre.is_(None), Prediction.genre == UNKNOWN)
    if rule.min_confidence is not None:
        confidence = case((UserLabel.genre.is_not(None), 1.0), else_=Prediction.confidence)
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


def _rank_confidence() -> ColumnElement[float]:
    """``LabelledTrack.rank_confidence`` in SQL."""
    return case(
        (UserLabel.genre.is_not(None), 1.0), else_=func.coalesce(Prediction.confidence, -1.0)
    )


def _sql_order(sort: str, reverse: bool) -> list[ColumnElement[Any]]:
    """``SORT_KEYS[sort]`` as ORDER BY terms, for the sorts in ``SQL_SORTS``."""
    if sort == "path":
        return [Track.path.desc() if reverse else Track.path.asc()]
    rank = _rank_confidence()
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
    matching = _matching_ids(model_id, rule)
    if matching is not None and not (rule.ids or rule.statuses):
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
    name = None if model is None else model.name
    walk = sort == "path" and limit is not None
    per_row = walk and _selects_many(session, -1 if model is None else model.id, rule)
    query = _labels_query(model, rule, per_row=per_row).order_by(*_sql_order(sort, reverse))
    out = []
    for track, user_genre, model_genre, confidence, top3, reason, music, tags in session.execute(
        query.limit(limit).offset(offset or None)
    ):
        source = USER if user_genre else MODEL if model_genre else None
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
                genre=user_genre or model_genre,
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
            )
        )
    return out


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


def _shuffle_key(seed: int, track: LabelledTrack) -> bytes:
    # Each track's place depends only on the seed and itself: adding a track to the
    # library does not reshuffle the rest of the playlist.
    return hashlib.sha256(f"{seed}:{track.id}".encode()).digest()


def order_tracks(
    tracks: Iterable[LabelledTrack], order: str, *, seed: int | None = None
) -> list[LabelledTrack]:
    if order == "random":
        return sorted(tracks, key=lambda t: _shuffle_key(seed or 0, t))
    return sorted(tracks, key=SORT_KEYS[order])


def cap_per_artist(tracks: Iterable[LabelledTrack], limit: int | None) -> list[LabelledTrack]:
    """Keep at most ``limit`` tracks per artist, in order; tracks without artist are kept."""
    if limit is None:
        return list(tracks)
    seen: Counter[str] = Counter()
    kept = []
    for track in tracks:
        if track.artist:
            key = track.artist.casefold()
            seen[key] += 1
            if seen[key] > limit:
                continue
        kept.append(track)
    return kept


def evaluate_playlist(
    session: Session, playlist: Playlist, *, model: Model | None = None
) -> list[LabelledTrack]:
    """The tracks a playlist's rule selects now, in its order."""
    rule = TrackFilter(
        genres=playlist.genres,
        min_confidence=playlist.min_confidence,
        statuses=(TrackStatus.OK,),
    )
    if playlist.order_by in SQL_SORTS and playlist.max_per_artist is None:
        # Only the order decides which tracks stay: the database cuts the list.
        return labelled_tracks(
            session, rule, model=model, sort=playlist.order_by, limit=playlist.max_tracks
        )
    ordered = order_tracks(
        labelled_tracks(session, rule, model=model), playlist.order_by, seed=playlist.seed
    )
    capped = cap_per_artist(ordered, playlist.max_per_artist)
    return capped if playlist.max_tracks is None else capped[: playlist.max_tracks]


@dataclass(frozen=True)
class PlaylistChange:
    name: str
    total: int
    added: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tracks": self.total,
            "added": len(self.added),
            "removed": len(self.removed),
        }


def find_playlist(session: Session, name: str) -> Playlist:
    playlist = session.scalar(select(Playlist).where(Playlist.name == name))
    if playlist is None:
        raise NotFoundError(f"no playlist named {name!r}: run `genrectl playlist list`")
    return playlist


def list_playlists(session: Session) -> list[Playlist]:
    return list(session.scalars(select(Playlist).order_by(Playlist.name)))


def refresh_playlists(
    session: Session, names: Sequence[str] = (), *, model: Model | None = None
) -> list[PlaylistChange]:
    """Record what each playlist (all, or those named) selects now, and what changed."""
    playlists = [find_playlist(session, n) for n in names] if names else list_playlists(session)
    model = model or promoted_model(session)
    changes = []
    for playlist in playlists:
        now = [t.id for t in evaluate_playlist(session, playlist, model=model)]
        before = set(playlist.track_ids or [])
        changes.append(
            PlaylistChange(
                playlist.name,
                len(now),
                added=[t for t in now if t not in before],
                removed=sorted(before - set(now)),
            )
        )
        playlist.track_ids, playlist.refreshed_at = now, utcnow()
    return changes


def known_genres(session: Session) -> set[str]:
    """Genres a label can have now: the promoted model's classes and the user's labels."""
    model = promoted_model(session)
    genres = set(session.scalars(select(UserLabel.genre).distinct()))
    if model is not None:
        genres |= {normalize_genre(c) for c in model.classes} | {UNKNOWN}
    return genres


def genre_counts(session: Session) -> dict[str, Any]:
    """Featurized tracks per label, with how many of them carry the user's own label."""
    tracks = labelled_tracks(session, TrackFilter(statuses=(TrackStatus.OK,)))
    per_genre: dict[str, Counter[str]] = defaultdict(Counter)
    for track in tracks:
        if track.genre is not None:
            per_genre[track.genre][track.source or ""] += 1
    rows: list[dict[str, Any]] = [
        {"genre": g, "tracks": sum(c.values()), "user_labelled": c[USER]}
        for g, c in per_genre.items()
    ]
    rows.sort(key=lambda r: (r["genre"] == UNKNOWN, -r["tracks"], r["genre"]))
    model = promoted_model(session)
    return {
        "model": None if model is None else model.name,
        "total": len(tracks),
        "unlabelled": sum(1 for t in tracks if t.genre is None),
        "genres": rows,
    }


def user_labels(session: Session) -> dict[int, str]:
    """track id -> the user's own genre (training data for ``train --from-library``)."""
    return dict(session.execute(select(UserLabel.track_id, UserLabel.genre)).all())


def set_user_label(session: Session, track: Track, genre: str | None) -> str | None:
    """Record (or with None, remove) the user's label for ``track``; returns the old one."""
    row = session.scalar(select(UserLabel).where(UserLabel.track_id == track.id))
    old = None if row is None else row.genre
    if genre is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(UserLabel(track_id=track.id, genre=normalize_genre(genre)))
    else:
        row.genre, row.created_at = normalize_genre(genre), utcnow()
    session.flush()
    return old


def find_track(session: Session, ref: str) -> Track:
    """A track by id, by path, or by the unique end of its path (``Artist/song.mp3``)."""
    if ref.isdigit() and (track := session.get(Track, int(ref))) is not None:
        return track
    absolute = os.path.abspath(os.path.expanduser(ref))
    for candidate in (ref, absolute):
        track = session.scalar(select(Track).where(Track.path == candidate))
        if track is not None:
            return track
    tail = "/" + ref.lstrip("/")
    matches = list(session.scalars(select(Track).where(Track.path.endswith(tail)).limit(6)))
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(t.path for t in matches[:5])
        raise NotFoundError(f"{ref!r} matches several tracks ({listed}): give the id or path")
    raise NotFoundError(f"no track {ref!r} in the library: run `genrectl tracks list`")


def model_genres(session: Session) -> dict[int, str]:
    """track id -> the genre models gave it: the promoted model's, else the latest one's."""
    promoted = promoted_model(session)
    rows = session.execute(
        select(Prediction.track_id, Prediction.genre, Prediction.model_id).order_by(
            Prediction.created_at, Prediction.id
        )
    )
    latest: dict[int, str] = {}
    chosen: dict[int, str] = {}
    for track_id, genre, model_id in rows:
        latest[track_id] = genre
        if promoted is not None and model_id == promoted.id:
            chosen[track_id] = genre
    return {**latest, **chosen}


def record_file_stamp(
    session: Session, track_id: int, *, size: int, mtime_ns: int, content_hash: str
) -> None:
    """After genrectl rewrote a file's tags: the next ingest must see it as unchanged."""
    track = session.get(Track, track_id)
    if track is not None:
        track.size, track.mtime_ns, track.content_hash = size, mtime_ns, content_hash
