"""Pages of the library for ``genrectl tracks list``: one page of labelled tracks in a
given order (``count_labelled`` says how many there are in all).

Sorted by path or confidence, the database orders and cuts the page; by the sorts that
compare case-folded text (artist, title, genre) every matching track is read and sorted
here (see ``SQL_SORTS``).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from db.models import Model
from db.playlists import (
    SORT_KEYS,
    SQL_SORTS,
    LabelledTrack,
    TrackFilter,
    labelled_tracks,
)


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
