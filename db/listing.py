"""Pages of the library for ``genrectl tracks list``: one page of labelled tracks in a
given order, and how many tracks the filter selects in all."""

from __future__ import annotations

from sqlalchemy.orm import Session

from db.models import Model
from db.playlists import SORT_KEYS, LabelledTrack, TrackFilter, labelled_tracks


def track_page(
    session: Session,
    rule: TrackFilter = TrackFilter(),
    *,
    sort: str = "path",
    reverse: bool = False,
    limit: int | None = None,
    offset: int = 0,
    model: Model | None = None,
) -> list[LabelledTrack]:
    """Tracks matching ``rule`` ordered by ``sort`` (a key of ``SORT_KEYS``), from
    ``offset``, at most ``limit`` of them."""
    found = labelled_tracks(session, rule, model=model)
    found.sort(key=SORT_KEYS[sort], reverse=reverse)
    return found[offset : None if limit is None else offset + limit]


def count_tracks(session: Session, rule: TrackFilter = TrackFilter(), *, model: Model | None = None) -> int:
    """How many tracks match ``rule``."""
    return len(labelled_tracks(session, rule, model=model))
