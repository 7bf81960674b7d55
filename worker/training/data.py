"""Training data: which tracks, of which genre, and their mel segments as SegmentSets.

Two sources give the same thing, a :class:`TrainingData` of tracks sorted by a stable key:

- a labelled folder in GTZAN's layout (a folder per genre): key ``"<genre>/<file stem>"``,
  features from the training cache (decoded once, see ``worker.training.cache``);
- the library (``--from-library``): tracks featurized without error whose file genre tag
  maps to a class through the genre map; key: the content sha256; features read from the
  library's own shards, so nothing is decoded (pitch-shifted copies go to the training cache).

Files with the same bytes are one track (the first key wins), so a duplicate can never sit
on both sides of a split. Tracks that cannot be used are dropped and counted before any
split is made.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from db.engine import session_scope
from db.models import Segment, Shard, Track, TrackStatus
from db.playlists import user_labels
from genrectl.errors import ConfigError
from genrectl.settings import Settings
from worker.training.cache import hash_files
from worker.training.datasets import SegmentSet, augmentation_steps, discover_labelled_folder
from worker.training.store import FeatureStore, TrainingTrack

GENRE_MAP_FILE = "genre-map.json"
# Tags spelled in many ways, mapped onto GTZAN's class names. Any other tag is its own class,
# lower-cased; a user's genre-map.json adds to and overrides this (null ignores a tag).
DEFAULT_GENRE_MAP: dict[str, str | None] = {
    "hip-hop": "hiphop",
    "hip hop": "hiphop",
    "rap": "hiphop",
    "hip-hop/rap": "hiphop",
    "rock & roll": "rock",
    "rock and roll": "rock",
    "rock 'n' roll": "rock",
    "rock'n'roll": "rock",
    "classic rock": "rock",
    "hard rock": "rock",
    "heavy metal": "metal",
    "thrash metal": "metal",
    "death metal": "metal",
    "black metal": "metal",
    "classic": "classical",
    "classical music": "classical",
    "country & western": "country",
    "reggae & dub": "reggae",
    "dub": "reggae",
    "jazz & blues": None,
    "other": None,
    "unknown": None,
    "misc": None,
    "genre": None,
}
# A library genre with fewer tracks cannot be both learnt and tested.
MIN_LIBRARY_TRACKS_PER_GENRE = 3
_TAG_PARTS = re.compile(r"[;|,/]")


def _normalise_tag(text: str) -> str:
    return " ".join(text.lower().split())


def load_genre_map(home: Path) -> dict[str, str | None]:
    """The default tag → class map, updated from ``home/genre-map.json`` if it exists
    (``{"Tag": "class", "Other tag": null}``; tags match case-insensitively)."""
    mapping = dict(DEFAULT_GENRE_MAP)
    path = home / GENRE_MAP_FILE
    if not path.exists():
        return mapping
    try:
        user = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read genre map '{path}': {exc}") from None
    if not isinstance(user, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in user.items()
    ):
        raise ConfigError(f"genre map '{path}' must be a JSON object of tag -> class or null")
    mapping.update({_normalise_tag(k): _normalise_tag(v) if v else None for k, v in user.items()})
    return mapping


def genre_of_tag(tag: str | None, genre_map: Mapping[str, str | None]) -> str | None:
    """The class a file's genre tag stands for, or None when it has no usable tag.

    The whole tag is looked up first, then its first part (``"Rock/Pop"`` → ``rock``).
    """
    if not tag or not _normalise_tag(tag):
        return None
    whole = _normalise_tag(tag)
    if whole in genre_map:
        return genre_map[whole]
    first = _normalise_tag(_TAG_PARTS.split(whole)[0])
    if not first or first.strip("()0123456789") == "":  # "(17)": an ID3v1 number
        return None
    return genre_map.get(first, first)


@dataclass(frozen=True)
class TrainingData:
    """Usable tracks sorted by key (a track's id is its position) and the sorted classes."""

    tracks: tuple[TrainingTrack, ...]
    classes: tuple[str, ...]
    description: dict[str, Any] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return [t.key for t in self.tracks]

    @property
    def genres(self) -> list[str]:
        return [t.genre for t in self.tracks]

    def by_key(self) -> dict[str, int]:
        return {t.key: i for i, t in enumerate(self.tracks)}


def _dedupe(tracks: Sequence[TrainingTrack]) -> tuple[list[TrainingTrack], list[str]]:
    kept: dict[str, TrainingTrack] = {}
    dropped = []
    for track in sorted(tracks, key=lambda t: t.key):
        if track.sha256 in kept:
            dropped.append(track.key)
        else:
            kept[track.sha256] = track
    return sorted(kept.values(), key=lambda t: t.key), dropped


def folder_tracks(
    settings: Settings, root: Path, store: FeatureStore
) -> tuple[list[TrainingTrack], dict[str, Any]]:
    """The usable tracks of a GTZAN-style folder, featurized into the training cache, and a
    description of what was found and dropped."""
    found = discover_labelled_folder(root)
    hashes, unreadable = hash_files(
        [t.path for t in found], cache_root=store.cache.directory.parent
    )
    tracks, duplicates = _dedupe(
        [
            TrainingTrack(t.key, t.genre, t.path, hashes[t.path], source=root.name)
            for t in found
            if t.path in hashes
        ]
    )
    failed = store.prepare([(t, 0) for t in tracks])
    failed.update({t.key: unreadable[t.path] for t in found if t.path in unreadable})
    usable = [t for t in tracks if t.key not in failed]
    description = {
        "source": "folder",
        "root": str(root),
        "files": len(found),
        "tracks": len(usable),
        "duplicates_dropped": duplicates,
        "unusable": [{"key": k, "reason": r} for k, r in sorted(failed.items())],
    }
    return usable, description


def folder_data(
    settings: Settings, roots: Path | Sequence[Path], store: FeatureStore
) -> TrainingData:
    """One or more labelled folders as training data (see ``folder_tracks``). Files with the
    same bytes in two folders are one track; a track key in two folders is an error."""
    roots = [roots] if isinstance(roots, Path) else list(roots)
    if len(roots) == 1:
        return _finish(*folder_tracks(settings, roots[0], store))
    parts = [folder_tracks(settings, root, store) for root in roots]
    seen: dict[str, Path] = {}
    for (tracks, _), root in zip(parts, roots, strict=True):
        for track in tracks:
            if seen.setdefault(track.key, root) != root:
                raise ConfigError(
                    f"track '{track.key}' is in both '{seen[track.key]}' and '{root}': "
                    "rename one, or train on one folder"
                )
    tracks, duplicates = _dedupe([t for tracks, _ in parts for t in tracks])
    description = {
        "source": "folders",
        "roots": [str(r) for r in roots],
        "folders": [d for _, d in parts],
        "duplicates_dropped": duplicates,
        "tracks": len(tracks),
    }
    return _finish(tracks, description)


def _finish(tracks: Sequence[TrainingTrack], description: dict[str, Any]) -> TrainingData:
    classes = tuple(sorted({t.genre for t in tracks}))
    if len(classes) < 2:
        raise ConfigError(
            f"training needs at least 2 genres with usable tracks, found {list(classes)} "
            f"in {description.get('root', 'the library')}"
        )
    description["tracks_per_genre"] = dict(sorted(Counter(t.genre for t in tracks).items()))
    return TrainingData(tuple(tracks), classes, description)


def library_data(settings: Settings) -> TrainingData:
    """Library tracks with the user's own label (``genrectl label``), or else a genre tag that
    maps to a class (see ``load_genre_map``). The user's label wins over the file's tag.
    Their features come from the library's shards where it holds them (every feature set
    featurized for the promoted model), else from the training cache (decoded once)."""
    genre_map = load_genre_map(settings.home)
    with session_scope(settings) as session:
        labels = user_labels(session)
        rows = session.execute(
            select(Track.id, Track.path, Track.content_hash, Track.genre_tag, Track.artist)
            .where(Track.status == TrackStatus.OK)
            .order_by(Track.id)
        ).all()
        segments = session.execute(
            select(Segment.track_id, Segment.feature_version, Shard.path, Shard.sha256, Segment.row)
            .join(Shard, Shard.id == Segment.shard_id)
            .order_by(Segment.track_id, Segment.feature_version, Segment.index)
        ).all()
    where: dict[int, dict[str, list[tuple[str, str, int]]]] = {}
    for track_id, version, shard, sha, row in segments:
        where.setdefault(track_id, {}).setdefault(version, []).append((shard, sha, row))
    tagged, untagged = [], 0
    for track_id, path, content_hash, tag, artist in rows:
        genre = labels.get(track_id) or genre_of_tag(tag, genre_map)
        if genre is None or not content_hash:
            untagged += 1
            continue
        local = Path(settings.map_path(path))
        held = {v: tuple(r) for v, r in where.get(track_id, {}).items()}
        tagged.append(TrainingTrack(content_hash, genre, local, content_hash, held, artist=artist))
    tracks, duplicates = _dedupe(tagged)
    counts = Counter(t.genre for t in tracks)
    rare = sorted(g for g, n in counts.items() if n < MIN_LIBRARY_TRACKS_PER_GENRE)
    description = {
        "source": "library",
        "featurized_tracks": len(rows),
        "without_usable_tag": untagged,
        "user_labels": sum(1 for track_id, *_ in rows if track_id in labels),
        "duplicates_dropped": len(duplicates),
        "rare_genres_dropped": {g: counts[g] for g in rare},
        "genre_map": str(settings.home / GENRE_MAP_FILE),
    }
    usable = [t for t in tracks if t.genre not in rare]
    description["tracks"] = len(usable)
    return _finish(usable, description)


def segment_set(
    data: TrainingData,
    keys: Sequence[str],
    store: FeatureStore,
    *,
    augment_seed: int | None = None,
    hop_seconds: float | None = None,
) -> tuple[SegmentSet, dict[str, int]]:
    """The segments of the tracks ``keys`` (plus, with ``augment_seed``, one pitch-shifted
    copy of each, steps from ``augmentation_steps``) and counts of what went in. With
    ``hop_seconds`` the segments are overlapping windows starting every ``hop_seconds``
    instead of the 6 s grid (more views of each training track)."""
    index = data.by_key()
    missing = [k for k in keys if k not in index]
    if missing:
        raise ConfigError(f"{len(missing)} tracks are not in the data, e.g. {missing[0]!r}")
    wanted = [(data.tracks[index[k]], 0) for k in keys]
    if augment_seed is not None:
        wanted += [(t, augmentation_steps(t.key, seed=augment_seed)) for t, _ in list(wanted)]
    # Cheap when everything is cached; library tracks may lack these features in the shards.
    store.prepare(wanted, hop_seconds=hop_seconds)
    mels = store.mel(wanted, hop_seconds=hop_seconds)
    label_of = {c: i for i, c in enumerate(data.classes)}
    parts = [
        (mel, label_of[t.genre], index[t.key])
        for (t, _), mel in zip(wanted, mels, strict=True)
        if mel is not None
    ]
    if not parts:
        raise ConfigError(f"none of the {len(keys)} tracks asked for has usable segments")
    shape = store.params.shapes["mel"]
    result = SegmentSet(
        np.concatenate([m for m, _, _ in parts]).reshape(-1, *shape),
        np.concatenate([np.full(len(m), label, np.int64) for m, label, _ in parts]),
        np.concatenate([np.full(len(m), tid, np.int64) for m, _, tid in parts]),
    )
    counts = {
        "tracks": len(keys),
        "segments": len(result),
        "augmented_copies": sum(
            1 for (_, s), m in zip(wanted, mels, strict=True) if s and m is not None
        ),
    }
    return result, counts
