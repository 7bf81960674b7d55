"""What an encoder says of a track beyond its genre: is it music at all, and its strongest
other classes (instruments, moods, "Speech"...).

Both come from the track's mean AudioSet probabilities (sigmoid of the stored logits,
averaged over its windows). "Is it music?" is its own question, separate from "which
genre?": a speech recording gets a confident genre from any genre classifier, but the
encoder's "Music" class is low on it and "Speech" high.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The encoder classes that say "not music" when they beat Music: speech, silence, the
# noise-like sounds generated test signals and field recordings are made of.
NOT_MUSIC_CLASSES: tuple[str, ...] = (
    "Speech",
    "Silence",
    "White noise",
    "Pink noise",
    "Noise",
    "Static",
    "Hum",
    "Sine wave",
    "Beep, bleep",
    "Tick",
    "Clicking",
    "Applause",
    "Clapping",
    "Cheering",
    "Crowd",
    "Wind",
    "Rain",
    "Vehicle",
)
MUSIC_CLASS = "Music"
# Classes not worth repeating as tags: Music itself and umbrella classes.
_NOT_TAGS = frozenset({MUSIC_CLASS, "Musical instrument"})
N_TAGS = 5


@dataclass(frozen=True)
class EncoderView:
    """``music``: P(Music); ``rival``: the strongest not-music class and its probability;
    ``is_music``: Music beats ``margin`` times the rival (see ``describe``); ``tags``: the
    strongest other classes, ``[(name, probability)]``, genres excluded."""

    music: float
    rival: tuple[str, float]
    is_music: bool
    tags: list[tuple[str, float]]

    @property
    def reason(self) -> str:
        """Why the track is not music, for the user: "not music: Speech 83% (Music 5%)"."""
        name, p = self.rival
        return f"not music: {name} {p:.0%} (Music {self.music:.0%})"


def describe(
    probabilities: np.ndarray,
    class_names: Sequence[str],
    *,
    genre_classes: Sequence[str] = (),
    min_music: float = 0.2,
    margin: float = 1.0,
) -> EncoderView:
    """The encoder's view of one track from its mean class probabilities ``[n_classes]``.

    A track is music when P(Music) >= ``min_music`` and P(Music) >= ``margin`` x the
    strongest not-music class. ``genre_classes``: encoder classes a genre model already
    reports, left out of the tags.
    """
    index = {name: i for i, name in enumerate(class_names)}
    music = float(probabilities[index[MUSIC_CLASS]])
    rivals = [(name, float(probabilities[index[name]])) for name in NOT_MUSIC_CLASSES]
    rival = max(rivals, key=lambda pair: pair[1])
    is_music = music >= min_music and music >= margin * rival[1]
    skip = _NOT_TAGS | set(genre_classes)
    order = np.argsort(-probabilities)
    tags = [
        (class_names[int(i)], round(float(probabilities[i]), 4))
        for i in order
        if class_names[int(i)] not in skip
    ][:N_TAGS]
    return EncoderView(round(music, 6), (rival[0], round(rival[1], 6)), is_music, tags)
