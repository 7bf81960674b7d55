"""A shard's state in the database: damaged (failed its check) until repaired."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from db.models import Shard


def mark_damaged(session: Session, path: str, reason: str) -> None:
    """Record why the shard at ``path`` failed its check; its tracks wait for
    `genrectl verify --repair` (labelling skips them meanwhile)."""
    session.execute(update(Shard).where(Shard.path == path).values(damaged=reason[:1000]))
