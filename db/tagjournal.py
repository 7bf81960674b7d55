"""The tag journal: what ``tags write`` changed in which file, for ``tags undo`` and
``tags history`` (tables ``tag_batches`` and ``tag_changes``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import TagBatch, TagChange, utcnow
from genrectl.errors import GenreError, NotFoundError


@dataclass(frozen=True)
class BatchSummary:
    """One ``tags write`` run as ``tags history`` lists it."""

    id: int
    created_at: datetime
    field: str
    written: int
    undone: int  # files of it given back so far
    undone_at: datetime | None  # when its last file was given back
    options: dict[str, Any]

    @property
    def state(self) -> str:
        if self.undone_at is not None:
            return "undone"
        return "partly undone" if self.undone else "written"


def start_batch(session: Session, field: str, options: dict[str, Any]) -> TagBatch:
    """A new batch for a run about to change files (flushed: it has its id)."""
    batch = TagBatch(field=field, options=options, written=0)
    session.add(batch)
    session.flush()
    return batch


def record_change(session: Session, batch: TagBatch, **columns: Any) -> TagChange:
    """One file's change in ``batch`` (see TagChange for the columns)."""
    change = TagChange(batch_id=batch.id, field=batch.field, **columns)
    session.add(change)
    batch.written += 1
    session.flush()
    return change


def forget_change(session: Session, change: TagChange) -> None:
    """The file was not changed after all (its rename failed): drop its record."""
    batch = session.get(TagBatch, change.batch_id)
    if batch is not None:
        batch.written -= 1
    session.delete(change)


def batch_to_undo(session: Session, batch_id: int | None) -> TagBatch:
    """Batch ``batch_id``, or the latest one with files not given back yet (a batch an undo
    left partly done, files refused, comes first again).

    Raises NotFoundError for an unknown id, GenreError when there is nothing to undo."""
    if batch_id is not None:
        batch = session.get(TagBatch, batch_id)
        if batch is None:
            raise NotFoundError(f"no tags write batch {batch_id}: see `genrectl tags history`")
        return batch
    pending = select(TagChange.id).where(
        TagChange.batch_id == TagBatch.id, TagChange.undone_at.is_(None)
    )
    batch = session.scalar(
        select(TagBatch).where(pending.exists()).order_by(TagBatch.id.desc()).limit(1)
    )
    if batch is None:
        raise GenreError("nothing to undo: no `tags write` batch is left that was not undone")
    return batch


def pending_changes(session: Session, batch: TagBatch) -> list[TagChange]:
    """The batch's changes not undone yet, in the order they were made."""
    return list(
        session.scalars(
            select(TagChange)
            .where(TagChange.batch_id == batch.id, TagChange.undone_at.is_(None))
            .order_by(TagChange.id)
        )
    )


def later_change(session: Session, change: TagChange) -> TagChange | None:
    """The latest change to the same file made after ``change`` and not undone."""
    return session.scalar(
        select(TagChange)
        .where(
            TagChange.path == change.path,
            TagChange.id > change.id,
            TagChange.undone_at.is_(None),
        )
        .order_by(TagChange.id.desc())
    )


def mark_undone(change: TagChange, how: str) -> None:
    change.undone_at, change.undo = utcnow(), how


def finish_undo(session: Session, batch: TagBatch) -> None:
    """Mark the batch undone once every file of it was given back (files refused keep it
    "partly undone", and the next ``tags undo`` tries them again)."""
    if not pending_changes(session, batch):
        batch.undone_at = utcnow()


def history(session: Session, *, limit: int | None = None) -> list[BatchSummary]:
    """Batches, the latest first, each with how many of its files were given back."""
    undone = (
        select(TagChange.batch_id, func.count().label("n"))
        .where(TagChange.undone_at.is_not(None))
        .group_by(TagChange.batch_id)
        .subquery()
    )
    rows = session.execute(
        select(TagBatch, func.coalesce(undone.c.n, 0))
        .outerjoin(undone, undone.c.batch_id == TagBatch.id)
        .order_by(TagBatch.id.desc())
        .limit(limit)
    )
    return [
        BatchSummary(
            id=batch.id,
            created_at=batch.created_at,
            field=batch.field,
            written=batch.written,
            undone=int(n),
            undone_at=batch.undone_at,
            options=batch.options,
        )
        for batch, n in rows
    ]
