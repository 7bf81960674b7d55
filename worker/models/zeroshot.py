"""The zero-shot map: which of an encoder's own classes stand for each genre.

AudioSet, mn04's training data, has about 60 music-genre classes, all ten of GTZAN's among
them, so a genre can be read off the encoder with no training at all: its score is the
largest logit among the classes mapped to it. That is the zero-shot model, and the prior a
trained head is blended with.

The map is editable: ``$GENRECTL_HOME/zeroshot-map.json`` (``{"genre": ["AudioSet class",
...], ...}``) adds genres and replaces the classes of the ones it names; a genre mapped to
``[]`` has no prior. Names are AudioSet's display names, as ``genrectl models classes``
lists them (case matters).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from genrectl.errors import ConfigError

ZEROSHOT_MAP_FILE = "zeroshot-map.json"

# GTZAN's ten genres by the AudioSet class of the same name, and common library genres by
# theirs. Only one class per GTZAN genre: related classes (Punk rock for rock, Rhythm and
# blues for blues...) were measured out of fold and did not help (README, "Models").
DEFAULT_ZEROSHOT_MAP: dict[str, list[str]] = {
    "blues": ["Blues"],
    "classical": ["Classical music"],
    "country": ["Country"],
    "disco": ["Disco"],
    "hiphop": ["Hip hop music"],
    "jazz": ["Jazz"],
    "metal": ["Heavy metal"],
    "pop": ["Pop music"],
    "reggae": ["Reggae"],
    "rock": ["Rock music"],
    "electronic": ["Electronic music", "Electronica", "Electronic dance music"],
    "house": ["House music"],
    "techno": ["Techno"],
    "dubstep": ["Dubstep"],
    "drum and bass": ["Drum and bass"],
    "trance": ["Trance music"],
    "ambient": ["Ambient music"],
    "new age": ["New-age music"],
    "folk": ["Folk music"],
    "soul": ["Soul music"],
    "r&b": ["Rhythm and blues"],
    "funk": ["Funk"],
    "punk": ["Punk rock"],
    "grunge": ["Grunge"],
    "progressive rock": ["Progressive rock"],
    "psychedelic rock": ["Psychedelic rock"],
    "rock and roll": ["Rock and roll"],
    "swing": ["Swing music"],
    "bluegrass": ["Bluegrass"],
    "opera": ["Opera"],
    "latin": ["Music of Latin America"],
    "salsa": ["Salsa music"],
    "flamenco": ["Flamenco"],
    "ska": ["Ska"],
    "afrobeat": ["Afrobeat"],
    "gospel": ["Gospel music"],
    "christian": ["Christian music"],
    "soundtrack": ["Soundtrack music"],
    "video game": ["Video game music"],
    "children's": ["Music for children"],
    "christmas": ["Christmas music"],
    "a cappella": ["A capella"],
    "indie": ["Independent music"],
    "world": ["Music of Africa", "Music of Asia", "Traditional music", "Middle Eastern music"],
}


def load_zeroshot_map(home: Path) -> dict[str, list[str]]:
    """The default map, updated from ``home/zeroshot-map.json`` if it exists."""
    mapping = {k: list(v) for k, v in DEFAULT_ZEROSHOT_MAP.items()}
    path = home / ZEROSHOT_MAP_FILE
    if not path.exists():
        return mapping
    try:
        user = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read zero-shot map '{path}': {exc}") from None
    valid = isinstance(user, dict) and all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(c, str) for c in v)
        for k, v in user.items()
    )
    if not valid:
        raise ConfigError(f"zero-shot map '{path}' must be a JSON object of genre -> [classes]")
    mapping.update({" ".join(k.lower().split()): list(v) for k, v in user.items()})
    return mapping


def prior_indices(
    classes: Sequence[str], mapping: Mapping[str, Sequence[str]], class_names: Sequence[str]
) -> list[list[int]]:
    """For each genre of ``classes``, the indices of its encoder classes (``[]``: none).
    Raises ConfigError naming a mapped class the encoder does not have."""
    index = {name: i for i, name in enumerate(class_names)}
    out = []
    for genre in classes:
        names = mapping.get(genre, [])
        unknown = [n for n in names if n not in index]
        if unknown:
            raise ConfigError(
                f"zero-shot map: genre {genre!r} names {unknown[0]!r}, which is not one of the "
                "encoder's classes (names are AudioSet's, case matters)"
            )
        out.append([index[n] for n in names])
    return out
