"""Which windows of a track are used: start times on a grid, thinned evenly on long tracks.

Light on purpose (numpy only): feature parameters describe their windows with a WindowSpec
without importing a decoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SHORT_TRACK_FILL = ("zeros", "repeat")


@dataclass(frozen=True)
class WindowSpec:
    """The windows of a track one feature set uses (see ``plan_segments``): ``seconds`` long,
    on a grid from 0 every ``hop_seconds`` (None: ``seconds``, no overlap), at most
    ``max_windows`` of them, evenly spaced over the track. A track shorter than one window
    fills it with ``fill``: ``"zeros"`` after its end (the reference's segments), or
    ``"repeat"``: the track again and again (what an encoder trained on full 10 s clips
    reads best)."""

    seconds: float
    max_windows: int
    hop_seconds: float | None = None
    fill: str = "zeros"

    def __post_init__(self) -> None:
        if self.fill not in SHORT_TRACK_FILL:
            raise ValueError(f"fill={self.fill!r} must be one of {', '.join(SHORT_TRACK_FILL)}")


def plan_segments(
    *,
    duration_s: float,
    segment_seconds: float,
    max_segments: int,
    min_seconds: float,
    hop_seconds: float | None = None,
) -> list[float]:
    """Start times in seconds of the segments to use from a track of ``duration_s`` seconds.

    Returns [] when the track is shorter than ``min_seconds``; [0.0] when it is shorter than
    one segment; else the full segments on the grid 0, hop, 2 * hop... (``hop_seconds``,
    default ``segment_seconds``: no overlap; a shorter hop gives overlapping windows, which
    training uses to see more of each track), thinned to ``max_segments`` evenly spaced ones
    if there are more (the middle one when ``max_segments`` is 1).
    """
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ValueError(f"duration_s={duration_s} must be a finite number >= 0")
    if not segment_seconds > 0:
        raise ValueError(f"segment_seconds={segment_seconds} must be positive")
    if max_segments < 1:
        raise ValueError(f"max_segments={max_segments} must be at least 1")
    if not 0 < min_seconds <= segment_seconds:
        raise ValueError(f"min_seconds={min_seconds} must be in (0, {segment_seconds}]")
    hop = segment_seconds if hop_seconds is None else hop_seconds
    if not (math.isfinite(hop) and 0 < hop <= segment_seconds):
        raise ValueError(f"hop_seconds={hop_seconds} must be in (0, {segment_seconds}]")
    if duration_s < min_seconds:
        return []
    if duration_s < segment_seconds - 1e-9:
        return [0.0]
    # The epsilon absorbs float error in durations computed as frames / rate.
    n_full = math.floor((duration_s - segment_seconds) / hop + 1e-9) + 1
    indices: Sequence[int] = range(n_full)
    if n_full > max_segments == 1:
        indices = [(n_full - 1) // 2]  # one window: the middle of the track, not its intro
    elif n_full > max_segments:
        indices = np.rint(np.linspace(0, n_full - 1, max_segments)).astype(int).tolist()
    return [round(i * hop, 6) for i in indices]
