"""Leases: one holder at a time for a cluster-wide periodic job.

Every worker offers to run the periodic jobs; the database decides who does. Taking a lease
is one UPDATE guarded by its expiry (or one INSERT for a lease never taken), so of any
number of workers asking at once exactly one wins, on SQLite and PostgreSQL alike. A lease
expires by itself: a holder that dies costs at most one period.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Lease, utcnow
from db.upsert import dialect_insert


def take_lease(session: Session, name: str, holder: str, *, seconds: float) -> bool:
    """True if ``holder`` now holds the lease ``name`` for ``seconds``."""
    now = utcnow()
    expires = now + timedelta(seconds=seconds)
    taken = session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.expires_at <= now)
        .values(holder=holder, expires_at=expires)
        .execution_options(synchronize_session=False)
    )
    if getattr(taken, "rowcount", 0):
        return True
    created = session.execute(
        dialect_insert(session)(Lease)
        .values(name=name, holder=holder, expires_at=expires, report={})
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(Lease.name)
    )
    return created.first() is not None  # no row back: another holder inserted it first


def record_run(session: Session, name: str, holder: str, report: dict[str, Any]) -> None:
    """What the holder's run did, for ``genrectl status``."""
    session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(ran_at=utcnow(), report=report)
        .execution_options(synchronize_session=False)
    )


def lease_reports(session: Session) -> dict[str, dict[str, Any]]:
    """Each periodic job's last run: who, when, what it did."""
    return {
        lease.name: {
            "holder": lease.holder,
            "ran_at": None if lease.ran_at is None else lease.ran_at.isoformat(timespec="seconds"),
            "report": lease.report,
        }
        for lease in session.scalars(select(Lease).order_by(Lease.name))
    }
