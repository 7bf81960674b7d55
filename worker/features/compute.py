"""From one decode of a file to every feature set asked for.

A file is decoded once, at the rate the feature sets share (22050 Hz), into the union of the
windows they use; each feature set is then computed from its own windows: the reference mel
from its 6 s segments, an encoder's outputs from its longer windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genrectl.errors import ConfigError
from worker.audio.decode import AudioInfo, DecodedWindows, load_windows
from worker.features.encoder import EncoderParams, encoder_outputs
from worker.features.mel import FeatureParams, mel_db
from worker.features.rhythm import Rhythm, longest_window, measure_rhythm
from worker.features.sets import FeatureSet


@dataclass(frozen=True)
class FeatureRows:
    """One feature set's rows for one track: start time in seconds of each segment or window,
    and each stored array, ``[len(starts_s), *shape]``."""

    starts_s: list[float]
    arrays: dict[str, np.ndarray]


@dataclass(frozen=True)
class Featurized:
    """A file's AudioInfo, its rows by feature version, and a note for the user (a track
    shorter than one window, zero-padded), None when there is nothing to say."""

    info: AudioInfo
    rows: dict[str, FeatureRows]
    note: str | None
    rhythm: Rhythm | None = None  # tempo and energy (worker.features.rhythm)


def compute_features(feature_set: FeatureSet, windows: DecodedWindows) -> dict[str, np.ndarray]:
    """The arrays ``feature_set`` stores, from its decoded windows."""
    if isinstance(feature_set, EncoderParams):
        return encoder_outputs(audio=windows.audio, params=feature_set)
    return {"mel": mel_db(segments=windows.audio, params=feature_set)}


def featurize_file(
    path: Path, *, sets: Sequence[FeatureSet], max_segments: int, min_seconds: float
) -> Featurized:
    """Decode ``path`` once and compute every feature set of ``sets`` from it.

    ``max_segments`` caps the reference mel's segments (GENRECTL_MAX_SEGMENTS; an encoder's
    window cap is one of its parameters). Raises DecodeError (UnusableAudioError for silent
    or too short audio) as ``load_windows`` does.
    """
    rates = {s.sample_rate for s in sets}
    if len(rates) != 1:
        raise ConfigError(f"feature sets decode at one rate, not {sorted(rates)} Hz")
    specs = [
        s.window_spec(max_windows=max_segments) if isinstance(s, FeatureParams) else s.window_spec()
        for s in sets
    ]
    rate = rates.pop()
    info, decoded = load_windows(path, sample_rate=rate, specs=specs, min_seconds=min_seconds)
    rows = {
        s.version: FeatureRows(list(w.starts_s), compute_features(s, w))
        for s, w in zip(sets, decoded, strict=True)
    }
    padded = [spec for spec, w in zip(specs, decoded, strict=True) if w.padded]
    note = None
    if padded:
        spec = max(padded, key=lambda s: s.seconds)
        how = "repeated to fill it" if spec.fill == "repeat" else "zero-padded"
        note = f"{info.duration_s:.1f} s: shorter than one {spec.seconds:g} s window, {how}"
    windows = [(s.seconds, w.audio, w.padded) for s, w in zip(specs, decoded, strict=True)]
    middle = longest_window(windows)
    rhythm = None if middle is None else measure_rhythm(audio=middle, sample_rate=rate)
    return Featurized(info, rows, note, rhythm)
