"""What mn04 says of a track beyond its genre: is it music at all, and its strongest other
classes (instruments, moods, "Speech"...).

Both come from the track's mean AudioSet probabilities (sigmoid of the stored logits,
averaged over its windows) and its level. "Is it music?" is its own question, separate from
"which genre?": a genre model gives a confident genre to speech or a test tone (measured:
DTMF tones "blues" at 0.999), so the answer must come from elsewhere:

- **silence**: the track's level before normalisation below -60 dBFS RMS;
- **no music genre**: the summed probability of AudioSet's music-genre classes ("Pop
  music" ... "Independent music") below 0.078. Measured (``bench/bench_music_gate.py``):
  every GTZAN full track is above it (lowest 0.134) and every one of 26 generated signals
  (speech in 7 voices, noises, tones, hum, a sweep, DTMF, clicks, applause) below it, the
  nearest a log sweep at 0.071. P(Music) alone cannot do this: AudioSet hears that sweep as
  music (0.63) more than some real tracks (0.61).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MUSIC_CLASS = "Music"
FIRST_GENRE, LAST_GENRE = "Pop music", "Independent music"  # AudioSet's genre block
MIN_GENRE_MASS = 0.078
SILENCE_DB = -60.0
# Classes not worth repeating as tags: Music itself and umbrella classes.
_NOT_TAGS = frozenset({MUSIC_CLASS, "Musical instrument"})
N_TAGS = 5


@dataclass(frozen=True)
class EncoderView:
    """``music``: P(Music); ``genre_mass``: the summed probability of the music-genre
    classes; ``level_db``: RMS before normalisation; ``strongest``: the strongest class
    that is neither Music nor a genre, with its probability; ``tags``: the strongest
    classes besides Music and the genres a model already reports."""

    music: float
    genre_mass: float
    level_db: float
    strongest: tuple[str, float]
    tags: list[tuple[str, float]]

    @property
    def is_music(self) -> bool:
        return self.level_db >= SILENCE_DB and self.genre_mass >= MIN_GENRE_MASS

    @property
    def reason(self) -> str:
        """Why the track is not music, for the user."""
        if self.level_db < SILENCE_DB:
            return f"not music: silence ({self.level_db:.0f} dBFS)"
        name, p = self.strongest
        return f"not music: {name} {p:.0%}, music genres {self.genre_mass:.0%}"


@functools.lru_cache(maxsize=4)
def _genre_block(class_names: tuple[str, ...]) -> tuple[int, int]:
    return class_names.index(FIRST_GENRE), class_names.index(LAST_GENRE) + 1


def track_level(levels_db: np.ndarray) -> float:
    """The RMS level of a track in dBFS from its windows' levels (a power mean)."""
    power = float(np.mean(np.power(10.0, np.asarray(levels_db, dtype=np.float64) / 10)))
    return 10 * math.log10(max(power, 1e-12))


def describe(
    probabilities: np.ndarray,
    class_names: Sequence[str],
    *,
    level_db: float,
    genre_classes: Sequence[str] = (),
) -> EncoderView:
    """mn04's view of one track from its mean class probabilities ``[527]`` and its level.
    ``genre_classes``: classes a genre model already reports, left out of the tags."""
    names = tuple(class_names)
    lo, hi = _genre_block(names)
    order = np.argsort(-probabilities)
    genre_block = set(range(lo, hi))
    strongest = next(
        int(i) for i in order if int(i) not in genre_block and names[int(i)] != MUSIC_CLASS
    )
    skip = _NOT_TAGS | set(genre_classes)
    tags = [
        (names[int(i)], round(float(probabilities[i]), 4))
        for i in order
        if names[int(i)] not in skip
    ]
    return EncoderView(
        music=round(float(probabilities[names.index(MUSIC_CLASS)]), 6),
        genre_mass=round(float(probabilities[lo:hi].sum()), 6),
        level_db=round(level_db, 2),
        strongest=(names[strongest], round(float(probabilities[strongest]), 4)),
        tags=tags[:N_TAGS],
    )
