"""``--scope track|album``: which label of a track a command reads (db.albums)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

SCOPE_HELP = (
    "album: a track shows its album's genre unless it clearly disagrees; track: its own "
    "(default: GENRECTL_SCOPE, track)."
)


def scope_option(function: F) -> F:
    """The ``--scope`` option; None when not given (then the settings' default applies)."""
    return click.option(
        "--scope", type=click.Choice(["track", "album"]), default=None, help=SCOPE_HELP
    )(function)
