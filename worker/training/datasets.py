"""Labelled datasets: GTZAN-style folders, splits and folds made on tracks, segment sets,
and the reference's pitch-shift augmentation.

Splits are always made on tracks *before* segmentation, so no track's segments can land in
two parts of a split. A track key is its path below the dataset root without the extension,
``"blues/blues.00001"``.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from genrectl.errors import ConfigError

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma"}
)
# The reference drew each training track's shift from {-9..-5, 5..9} semitones.
PITCH_STEPS: tuple[int, ...] = (-9, -8, -7, -6, -5, 5, 6, 7, 8, 9)
_GTZAN_STEM = re.compile(r"^([a-z]+)\.\d{5}$")


@dataclass(frozen=True)
class LabelledTrack:
    """One audio file of a labelled dataset and its genre (the name of its folder)."""

    path: Path
    genre: str
    key: str


@dataclass(frozen=True)
class Split:
    """Track keys of the train, validation and test parts; disjoint."""

    train: list[str]
    val: list[str]
    test: list[str]


@dataclass(frozen=True)
class SegmentSet:
    """Segments held in memory for training and evaluation.

    ``mel``: float16 or float32 dB ``[N, n_mels, n_frames]``; ``labels``: int64 ``[N]`` class
    indices; ``track_ids``: int64 ``[N]``, shared by the segments of one track.
    """

    mel: np.ndarray
    labels: np.ndarray
    track_ids: np.ndarray

    def __post_init__(self) -> None:
        if self.mel.ndim != 3:
            raise ConfigError(f"mel has shape {self.mel.shape}; expected [N, n_mels, n_frames]")
        n = self.mel.shape[0]
        if self.labels.shape != (n,) or self.track_ids.shape != (n,):
            raise ConfigError(
                f"labels {self.labels.shape} and track_ids {self.track_ids.shape} must both "
                f"have shape ({n},) to match mel {self.mel.shape}"
            )

    def __len__(self) -> int:
        return int(self.mel.shape[0])

    def subset(self, indices: np.ndarray) -> SegmentSet:
        """The segments at ``indices`` (an int array or boolean mask over ``N``)."""
        return SegmentSet(self.mel[indices], self.labels[indices], self.track_ids[indices])

    def of_tracks(self, track_ids: Sequence[int] | np.ndarray) -> SegmentSet:
        """The segments of the given tracks, in their stored order."""
        return self.subset(np.isin(self.track_ids, np.asarray(track_ids, dtype=np.int64)))

    @staticmethod
    def concatenate(parts: Sequence[SegmentSet]) -> SegmentSet:
        """One set holding the segments of all ``parts``, in order."""
        return SegmentSet(
            np.concatenate([p.mel for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.track_ids for p in parts]),
        )


def mel_statistics(mel: np.ndarray, *, chunk: int = 1024) -> dict[str, float]:
    """Mean and standard deviation of all values of ``mel`` ``[N, ...]`` dB, in float64,
    a chunk of segments at a time (a float16 set can be far larger as float64)."""
    total = total_sq = 0.0
    for start in range(0, len(mel), chunk):
        block = np.asarray(mel[start : start + chunk], dtype=np.float64)
        total += float(block.sum())
        total_sq += float(np.square(block).sum())
    count = mel.size
    mean = total / count
    return {"mean": mean, "std": math.sqrt(max(total_sq / count - mean * mean, 1e-12))}


def discover_labelled_folder(root: Path) -> list[LabelledTrack]:
    """The audio files of a folder-per-genre dataset (GTZAN's layout), sorted by key.

    ``root/<genre>/<file>.<audio extension>``; hidden files and other extensions are skipped.
    """
    if not root.is_dir():
        raise ConfigError(f"dataset folder '{root}' does not exist or is not a folder")
    tracks = [
        LabelledTrack(path=path, genre=genre_dir.name, key=f"{genre_dir.name}/{path.stem}")
        for genre_dir in sorted(root.iterdir())
        if genre_dir.is_dir() and not genre_dir.name.startswith(".")
        for path in sorted(genre_dir.rglob("*"))
        if path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() in AUDIO_EXTENSIONS
    ]
    if not tracks:
        raise ConfigError(f"no audio files in genre folders under '{root}'")
    keys = [t.key for t in tracks]
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        raise ConfigError(f"'{root}' has several files per track key: {', '.join(dupes[:5])}")
    return sorted(tracks, key=lambda t: t.key)


def _by_label(track_keys: Sequence[str], labels: Sequence[str]) -> dict[str, list[str]]:
    if len(track_keys) != len(labels):
        raise ConfigError(f"{len(track_keys)} track keys but {len(labels)} labels")
    if len(set(track_keys)) != len(track_keys):
        raise ConfigError("track keys must be unique")
    groups: dict[str, list[str]] = defaultdict(list)
    for key, label in zip(track_keys, labels, strict=True):
        groups[label].append(key)
    return {label: sorted(keys) for label, keys in sorted(groups.items())}


def split_tracks(
    track_keys: Sequence[str],
    labels: Sequence[str],
    *,
    seed: int,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> Split:
    """Split tracks into train/val/test, stratified by genre, reproducible from ``seed``.

    Each genre gives ``n * fraction`` of its tracks (rounded half up) to val and to test and
    the rest to train, so a split of GTZAN's 10 x 100 tracks is exactly 800/100/100.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"fractions={fractions} must be three non-negative numbers summing to 1")
    rng = np.random.default_rng(seed)
    train: list[str] = []
    val: list[str] = []
    test: list[str] = []
    for keys in _by_label(track_keys, labels).values():
        order = [keys[i] for i in rng.permutation(len(keys))]
        n_val, n_test = (math.floor(len(keys) * f + 0.5) for f in fractions[1:])
        test += order[:n_test]
        val += order[n_test : n_test + n_val]
        train += order[n_test + n_val :]
    return Split(sorted(train), sorted(val), sorted(test))


def kfold(
    track_keys: Sequence[str],
    labels: Sequence[str],
    *,
    k: int,
    seed: int,
    val_fraction: float = 0.1,
) -> list[Split]:
    """``k`` stratified folds over tracks: fold ``i`` tests on the ``i``-th held-out part and
    carves ``val_fraction`` of the rest (stratified) out as validation.

    Every track is tested exactly once across the folds.
    """
    if k < 2:
        raise ConfigError(f"k={k} must be at least 2")
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    offset = 0  # rotate where each genre starts so fold sizes stay within one of each other
    for keys in _by_label(track_keys, labels).values():
        for position, i in enumerate(rng.permutation(len(keys))):
            fold_of[keys[i]] = (offset + position) % k
        offset += len(keys)
    label_of = dict(zip(track_keys, labels, strict=True))
    splits = []
    for fold in range(k):
        rest = sorted(key for key, f in fold_of.items() if f != fold)
        inner = split_tracks(
            rest,
            [label_of[key] for key in rest],
            seed=seed * 1_000 + fold,
            fractions=(1.0 - val_fraction, val_fraction, 0.0),
        )
        test = sorted(key for key, f in fold_of.items() if f == fold)
        splits.append(Split(inner.train, inner.val, test))
    return splits


def normalise_track_key(text: str) -> str:
    """A line of a split file as a track key: ``"blues/blues.00001.wav"``, ``"blues.00001"``
    and ``"genres/blues/blues.00001.au"`` all give ``"blues/blues.00001"``."""
    path = PurePosixPath(text.strip().replace("\\", "/"))
    stem = path.stem if path.suffix.lower() in AUDIO_EXTENSIONS | {".au"} else path.name
    if len(path.parts) >= 2:
        return f"{path.parts[-2]}/{stem}"
    gtzan = _GTZAN_STEM.match(stem)
    return f"{gtzan.group(1)}/{stem}" if gtzan else stem


def _read_keys(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read split file '{path}': {exc.strerror}") from exc
    keys = [
        normalise_track_key(line) for line in lines if line.strip() and not line.startswith("#")
    ]
    if not keys:
        raise ConfigError(f"split file '{path}' names no tracks")
    return keys


def read_split_files(train: Path, val: Path, test: Path) -> Split:
    """A split given as three files of track ids, one per line (``#`` starts a comment).

    Raises ``ConfigError`` if a track is named in two of the files.
    """
    parts = [_read_keys(path) for path in (train, val, test)]
    seen: dict[str, Path] = {}
    for path, keys in zip((train, val, test), parts, strict=True):
        for key in keys:
            if key in seen and seen[key] != path:
                raise ConfigError(f"track '{key}' is in both '{seen[key]}' and '{path}'")
            seen[key] = path
    return Split(*(sorted(set(keys)) for keys in parts))


def augmentation_steps(track_key: str, *, seed: int) -> int:
    """The pitch shift in semitones for one training track, drawn from {-9..-5, 5..9}.

    Deterministic in ``(track_key, seed)`` and independent of which other tracks exist.
    """
    digest = hashlib.sha256(f"{seed}\0{track_key}".encode()).digest()
    return PITCH_STEPS[int.from_bytes(digest[:8], "big") % len(PITCH_STEPS)]


def pitch_shift_segments(audio: np.ndarray, *, sr: int, n_steps: int) -> np.ndarray:
    """Pitch-shift each segment by ``n_steps`` semitones (12 bins per octave).

    ``audio``: float32 ``[n, samples]`` mono at ``sr`` Hz; returns the same shape and dtype.
    """
    import librosa  # deferred: importing librosa costs about a second

    if audio.ndim != 2:
        raise ConfigError(f"audio has shape {audio.shape}; expected [n_segments, samples]")
    shifted = librosa.effects.pitch_shift(audio, sr=sr, n_steps=n_steps, bins_per_octave=12)
    return np.ascontiguousarray(shifted, dtype=audio.dtype)
