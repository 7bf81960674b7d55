"""INSERT ... ON CONFLICT DO NOTHING for both SQLite and PostgreSQL.

Two ingests of the same library at once must not create duplicate rows: the unique
constraints decide, and the loser's insert is simply skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def dialect_insert(session: Session) -> Any:
    """The INSERT construct of the session's database (both have ON CONFLICT)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def insert_ignore(
    session: Session, model: Any, rows: Sequence[dict[str, Any]], *, index_elements: list[str]
) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``model``'s table, skipping those a
    unique index on ``index_elements`` already holds.

    One statement executed for many rows: SQLAlchemy compiles it once and sends the rows
    in pages of many VALUES each under the database's parameter limit (a multi-VALUES
    statement per page, built here, cost more to compile than the database took to run it).
    """
    if not rows:
        return
    statement = dialect_insert(session)(model.__table__)
    session.execute(statement.on_conflict_do_nothing(index_elements=index_elements), list(rows))
