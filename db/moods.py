"""Queries on moods, energy and tempo: the filters ``db.listing`` applies, and a track's
moods for display and for tags.

A mood test is one range of ``track_moods(mood, score, track_id)`` (a track has a mood at
or above the mood's threshold, ``genrectl.moods.THRESHOLDS``); energy and tempo are ranges
of their indexes on ``tracks``. Several moods select the tracks that have any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from db.models import Track, TrackMood
from genrectl.moods import THRESHOLDS, check_mood, track_mood_names

if TYPE_CHECKING:  # db.listing imports this module
    from db.listing import LabelledTrack


class AudioRule(Protocol):
    """The part of ``db.listing.TrackFilter`` this module reads."""

    @property
    def moods(self) -> Sequence[str]: ...
    @property
    def min_energy(self) -> float | None: ...
    @property
    def tempo(self) -> tuple[float, float] | None: ...


@dataclass(frozen=True)
class MoodRule:
    """A playlist's moods (any of them), minimum energy and tempo range, as stored in
    ``Playlist.mood_rule``."""

    moods: tuple[str, ...] = ()
    min_energy: float | None = None
    tempo: tuple[float, float] | None = None

    def __bool__(self) -> bool:
        return bool(self.moods) or self.min_energy is not None or self.tempo is not None

    def to_dict(self) -> dict[str, Any] | None:
        if not self:
            return None
        return {
            "moods": list(self.moods),
            "min_energy": self.min_energy,
            "tempo": None if self.tempo is None else list(self.tempo),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> MoodRule:
        if not data:
            return cls()
        tempo = data.get("tempo")
        return cls(
            moods=tuple(data.get("moods") or ()),
            min_energy=data.get("min_energy"),
            tempo=None if tempo is None else (float(tempo[0]), float(tempo[1])),
        )

    def summary(self) -> str:
        """``happy or party; energy >= 0.6; 100-130 BPM``."""
        parts = []
        if self.moods:
            parts.append(" or ".join(self.moods))
        if self.min_energy is not None:
            parts.append(f"energy >= {self.min_energy:g}")
        if self.tempo is not None:
            parts.append(f"{self.tempo[0]:g}-{self.tempo[1]:g} BPM")
        return "; ".join(parts)


def has_audio_rule(rule: AudioRule) -> bool:
    return bool(rule.moods) or rule.min_energy is not None or rule.tempo is not None


def mood_matches(moods: Sequence[str]) -> Select[Any]:
    """Ids of the tracks that have any of ``moods`` (each an index range)."""
    tests = [
        (TrackMood.mood == mood) & (TrackMood.score >= THRESHOLDS[mood])
        for mood in (check_mood(m) for m in moods)
    ]
    return select(TrackMood.track_id).where(or_(*tests))


def audio_filtered(query: Select[Any], rule: AudioRule) -> Select[Any]:
    """``query`` (over tracks) cut to the tracks whose moods, energy and tempo pass."""
    if rule.moods:
        query = query.where(Track.id.in_(mood_matches(rule.moods)))
    if rule.min_energy is not None:
        query = query.where(Track.energy >= rule.min_energy)
    if rule.tempo is not None:
        query = query.where(Track.tempo_bpm.between(*rule.tempo))
    return query


def mood_scores(session: Session, track_ids: Sequence[int]) -> dict[int, dict[str, float]]:
    """track id -> mood -> score, for the tracks of ``track_ids`` that have moods stored."""
    out: dict[int, dict[str, float]] = {}
    for start in range(0, len(track_ids), 500):
        rows = session.execute(
            select(TrackMood.track_id, TrackMood.mood, TrackMood.score).where(
                TrackMood.track_id.in_(list(track_ids[start : start + 500]))
            )
        )
        for track_id, mood, score in rows:
            out.setdefault(track_id, {})[mood] = score
    return out


def track_moods(session: Session, track_id: int) -> list[str]:
    """The moods a track has, strongest first (at most ``genrectl.moods.MAX_SHOWN``); [] when
    none reaches its threshold or the track has no moods stored. What ``tags write --field
    mood`` writes (one value per mood)."""
    return track_mood_names(mood_scores(session, [track_id]).get(track_id, {}))


def with_moods(session: Session, tracks: Sequence[LabelledTrack]) -> list[LabelledTrack]:
    """``tracks`` with their stored mood scores (``{}`` where none are stored): one query
    per 500 tracks, for a page that is shown."""
    scores = mood_scores(session, [t.id for t in tracks])
    return [replace(t, moods=scores.get(t.id, {})) for t in tracks]
