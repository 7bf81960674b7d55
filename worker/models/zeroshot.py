"""The zero-shot maps: which of each encoder's own classes stand for each genre.

AudioSet, mn04's training data, has about 60 music-genre classes, all ten of GTZAN's among
them, and msd_fcn's 50 Last.fm tags hold most of them too, so a genre can be read off an
encoder with no training at all: its score is the largest logit among the classes mapped
to it. mn04's alone is the zero-shot model; both, calibrated, are the prior a trained head
is blended with.

The maps are editable: ``$GENRECTL_HOME/zeroshot-map.json``, ``{"mn04": {"genre":
["AudioSet class", ...]}, "msd_fcn": {"genre": ["tag", ...]}}``, adds genres and replaces
the classes of the ones it names; a genre mapped to ``[]`` has none for that encoder.
Names are the encoders' own, as ``genrectl models classes [--encoder msd_fcn]`` lists them
(case matters).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from genrectl.errors import ConfigError

ZEROSHOT_MAP_FILE = "zeroshot-map.json"

# GTZAN's ten genres by the AudioSet class of the same name, and common library genres by
# theirs. Only one class per GTZAN genre: adding related classes (Punk rock, Grunge for rock;
# Soul, Rhythm and blues for pop; Funk for disco...), fixed or chosen per fold, made the
# zero-shot model worse out of fold on GTZAN (73 % of full tracks down to 67-71 %).
MN04_MAP: dict[str, list[str]] = {
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
# The Last.fm tags msd_fcn knows, by name, fixed before any result was looked at. It has no
# reggae tag; "instrumental" is the nearest it has to classical, dance and funk to disco.
MSD_FCN_MAP: dict[str, list[str]] = {
    "blues": ["blues"],
    "classical": ["instrumental"],
    "country": ["country"],
    "disco": ["dance", "funk"],
    "hiphop": ["Hip-Hop"],
    "jazz": ["jazz"],
    "metal": ["metal", "heavy metal"],
    "pop": ["pop"],
    "reggae": [],
    "rock": ["rock", "classic rock"],
    "electronic": ["electronic", "electronica", "electro"],
    "house": ["House"],
    "ambient": ["ambient"],
    "folk": ["folk"],
    "soul": ["soul"],
    "r&b": ["rnb"],
    "funk": ["funk"],
    "punk": ["punk"],
    "indie": ["indie", "indie rock", "indie pop"],
    "alternative": ["alternative", "alternative rock"],
    "hard rock": ["hard rock"],
    "progressive rock": ["Progressive rock"],
}
DEFAULT_ZEROSHOT_MAPS: dict[str, dict[str, list[str]]] = {"mn04": MN04_MAP, "msd_fcn": MSD_FCN_MAP}


def load_zeroshot_map(home: Path) -> dict[str, dict[str, list[str]]]:
    """The default maps by encoder, updated from ``home/zeroshot-map.json`` if it exists."""
    maps = {e: {g: list(c) for g, c in m.items()} for e, m in DEFAULT_ZEROSHOT_MAPS.items()}
    path = home / ZEROSHOT_MAP_FILE
    if not path.exists():
        return maps
    try:
        user = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read zero-shot map '{path}': {exc}") from None
    valid = isinstance(user, dict) and all(
        isinstance(e, str)
        and isinstance(m, dict)
        and all(
            isinstance(g, str) and isinstance(c, list) and all(isinstance(n, str) for n in c)
            for g, c in m.items()
        )
        for e, m in user.items()
    )
    if not valid:
        raise ConfigError(
            f"zero-shot map '{path}' must be a JSON object of encoder -> genre -> [classes], "
            'e.g. {"mn04": {"ska": ["Ska"]}}'
        )
    for encoder, mapping in user.items():
        maps.setdefault(encoder, {}).update(
            {" ".join(g.lower().split()): list(c) for g, c in mapping.items()}
        )
    return maps


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
