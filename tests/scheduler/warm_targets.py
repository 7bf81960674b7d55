"""Functions the warm worker runs in tests (scheduler.warm takes any "module:function")."""

from __future__ import annotations

import time
from pathlib import Path


def touch_and_sleep(marker: str, seconds: float) -> str:
    """Say it started (``marker`` appears), then hold the worker for ``seconds``."""
    Path(marker).touch()
    time.sleep(seconds)
    return "slept"
