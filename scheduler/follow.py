"""Following work from the CLI: what to tell the user when a wait stops moving.

A waiting CLI reads progress from the database. Two things can make it wait forever in
silence: no worker consumes the queue, or the database is away. Both are said once, in one
line, and the wait goes on (Ctrl-C is always safe: the work lives in the database).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError

from genrectl.settings import Settings
from scheduler.cluster import BrokerUnavailable, live_workers, queue_depths

T = TypeVar("T")
Notify = Callable[[str], None]


@dataclass
class WorkerWatch:
    """Says so when a wait makes no progress and no live worker consumes ``queue``, or
    when workers are live but no message is waiting or in flight (the work was lost).

    ``observe`` is called on every poll; it asks the workers only after ``stall_s`` without
    progress, and at most every ``recheck_s``, so a healthy wait costs nothing.
    """

    settings: Settings
    queue: str
    notify: Callable[[str], None]
    hint: str = ""
    stall_s: float = 5.0
    recheck_s: float = 30.0
    _value: int = -1
    _since: float = field(default_factory=time.monotonic)
    _checked: float | None = None

    def observe(self, finished: int) -> None:
        now = time.monotonic()
        if finished != self._value:
            self._value, self._since = finished, now
            return
        if now - self._since < self.stall_s:
            return
        if self._checked is not None and now - self._checked < self.recheck_s:
            return
        self._checked = now
        message = self._problem()
        if message:
            self.notify(message + (f" {self.hint}" if self.hint else ""))

    def _problem(self) -> str | None:
        try:
            workers = live_workers(self.settings)
            depths = queue_depths(self.settings)
        except BrokerUnavailable as exc:
            return str(exc) + "."
        if not any(self.queue in w.queues for w in workers):
            return (
                f"no live worker consumes the {self.queue!r} queue: start one with "
                f"`genrectl worker --queues {self.queue}`."
            )
        if depths[self.queue] == 0 and depths["in_flight"] == 0:
            return (
                f"nothing is waiting in or taken from the {self.queue!r} queue, yet the work is "
                "unfinished: its messages were lost; `genrectl reconcile` sends them again."
            )
        return None


@dataclass
class DatabasePoll:
    """Reads through a database outage: says so once when it starts and once when it ends."""

    notify: Notify
    down: bool = False

    def read(self, query: Callable[[], T]) -> T | None:
        try:
            value = query()
        except (OperationalError, InterfaceError) as exc:
            if not self.down:
                self.notify(f"database unavailable, still waiting: {str(exc).splitlines()[0]}")
            self.down = True
            return None
        if self.down:
            self.notify("database reachable again")
            self.down = False
        return value
