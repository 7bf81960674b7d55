"""INSERT ... ON CONFLICT DO NOTHING for both SQLite and PostgreSQL.

Two ingests of the same library at once must not create duplicate rows: the unique
constraints decide, and the loser's insert is simply skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

BATCH_ROWS = 500  # keeps each statement under SQLite's bound-parameter limit


def dialect_insert(session: Session) -> Any:
    """The INSERT construct of the session's database (both have ON CONFLICT)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def insert_ignore(
    session: Session, model: Any, rows: Sequence[dict[str, Any]], *, index_elements: list[str]
) -> None:
    if not rows:
        return
    insert = dialect_insert(session)
    for start in range(0, len(rows), BATCH_ROWS):
        statement = insert(model).values(list(rows[start : start + BATCH_ROWS]))
        session.execute(statement.on_conflict_do_nothing(index_elements=index_elements))
