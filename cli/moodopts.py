"""The ``--mood``, ``--min-energy`` and ``--tempo`` options ``tracks list`` and ``playlist
create`` share, and how a track's moods, tempo and energy are shown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from db.moods import MoodRule
from genrectl.moods import MOODS, check_mood, parse_tempo, track_mood_names

F = TypeVar("F", bound=Callable[..., Any])


def _moods(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    try:
        return tuple(dict.fromkeys(check_mood(v) for v in values))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _tempo(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return parse_tempo(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def audio_options(function: F) -> F:
    """Add ``--mood`` (repeat: any of them), ``--min-energy`` and ``--tempo``."""
    function = click.option(
        "--tempo",
        callback=_tempo,
        metavar="BPM-BPM",
        help="Only tracks with a tempo in this range, e.g. 100-130 (measured when featurized).",
    )(function)
    function = click.option(
        "--min-energy",
        type=click.FloatRange(0, 1),
        help="Only tracks at least this energetic (0..1).",
    )(function)
    return click.option(
        "--mood",
        "moods",
        multiple=True,
        callback=_moods,
        help=f"Only tracks with this mood (repeat for any of several): {', '.join(MOODS)}.",
    )(function)


def audio_rule(options: dict[str, Any]) -> MoodRule:
    """The options ``audio_options`` added, as a rule."""
    return MoodRule(
        moods=tuple(options.get("moods") or ()),
        min_energy=options.get("min_energy"),
        tempo=options.get("tempo"),
    )


def mood_cell(scores: dict[str, float] | None) -> str:
    return ", ".join(track_mood_names(scores or {}))


def tempo_cell(tempo_bpm: float | None) -> str:
    return "" if tempo_bpm is None else f"{tempo_bpm:.0f}"


def energy_cell(energy: float | None) -> str:
    return "" if energy is None else f"{energy:.2f}"
