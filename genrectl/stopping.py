"""Ctrl-C and SIGTERM stop a command the same way: as a KeyboardInterrupt in the main thread.

Python turns SIGINT into KeyboardInterrupt already; ``raise_on_sigterm`` makes SIGTERM raise
``Terminated``, a KeyboardInterrupt too, so that every ``finally`` and every rollback on the
way out runs for both, and the commands need one ``except KeyboardInterrupt`` to stop cleanly.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``, a service manager stopping genrectl)."""

    signum = signal.SIGTERM


def signal_of(exc: KeyboardInterrupt) -> int:
    """The signal behind an interrupt: SIGTERM for ``Terminated``, else SIGINT (Ctrl-C)."""
    return int(getattr(exc, "signum", signal.SIGINT))


def signal_name(signum: int) -> str:
    """How the user knows the signal: ``Ctrl-C``, ``SIGTERM``."""
    if signum == signal.SIGINT:
        return "Ctrl-C"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    raise Terminated()


def raise_on_sigterm() -> None:
    """From now on SIGTERM raises ``Terminated`` in the main thread (no-op elsewhere: only the
    main thread may set handlers)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
