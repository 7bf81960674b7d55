"""The tag journal's queries, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.models import TagBatch, TagChange
from db.tagjournal import (
    batch_to_undo,
    finish_undo,
    forget_change,
    history,
    later_change,
    mark_undone,
    pending_changes,
    record_change,
    start_batch,
)
from genrectl.errors import GenreError, NotFoundError
from genrectl.settings import Settings

PATCH = bytes(range(256))  # binary, NULs included: it must come back as it went in


def _change(session: Session, batch: TagBatch, path: str) -> TagChange:
    return record_change(
        session,
        batch,
        track_id=None,
        path=path,
        old_values={"TCON": None, "TIT1": [""]},
        new_values=["jazz", "blues"],
        sha256_before="a" * 64,
        sha256_after="b" * 64,
        size_before=10**10,  # over 32 bits
        mtime_ns_before=1_700_000_000_000_000_000,
        size_after=10**10 + 5,
        mtime_ns_after=1_700_000_000_000_000_001,
        patch=PATCH,
    )


def test_undo_takes_the_latest_batch_with_files_left(db_settings: Settings) -> None:
    with session_scope(db_settings) as session:
        with pytest.raises(GenreError, match="nothing to undo"):
            batch_to_undo(session, None)
        first = start_batch(session, "genre", {"max_genres": 2})
        a1, b1 = _change(session, first, "/a.mp3"), _change(session, first, "/b.mp3")
        second = start_batch(session, "grouping", {})
        a2 = _change(session, second, "/a.mp3")
        forgotten = _change(session, second, "/c.mp3")
        forget_change(session, forgotten)
        session.commit()
        assert second.written == 1 and pending_changes(session, second) == [a2]
        assert later_change(session, a1) == a2 and later_change(session, b1) is None
        assert batch_to_undo(session, None).id == second.id

        mark_undone(a2, "restored")
        finish_undo(session, second)
        mark_undone(a1, "restored")  # b1 was refused: the first batch is partly undone
        finish_undo(session, first)
        session.commit()
        assert second.undone_at is not None and first.undone_at is None
        assert batch_to_undo(session, None).id == first.id
        assert later_change(session, a1) is None
        with pytest.raises(NotFoundError, match="no tags write batch 99"):
            batch_to_undo(session, 99)
        listed = history(session)
        assert [(b.id, b.field, b.written, b.undone, b.state) for b in listed] == [
            (second.id, "grouping", 1, 1, "undone"),
            (first.id, "genre", 2, 1, "partly undone"),
        ]
        assert listed[1].options == {"max_genres": 2}


def test_values_and_patch_come_back_exactly(db_settings: Settings) -> None:
    with session_scope(db_settings) as session:
        batch = start_batch(session, "genre", {})
        change_id = _change(session, batch, "/a.flac").id
    with session_scope(db_settings) as session:
        change = session.get(TagChange, change_id)
        assert change is not None
        assert change.patch == PATCH and change.old_values == {"TCON": None, "TIT1": [""]}
        assert change.new_values == ["jazz", "blues"] and change.size_before == 10**10
        assert change.mtime_ns_after == 1_700_000_000_000_000_001
