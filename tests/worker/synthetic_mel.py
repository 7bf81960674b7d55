"""Tiny generated "genres" of dB mel spectrograms that a small CNN can tell apart.

Genre 0 is sustained tones (horizontal bands), genre 1 is rhythm (vertical clicks), genre 2
(when asked for) is a bright noise floor; each segment gets random positions and noise, in the
[-80, 0] dB range real features have.
"""

from __future__ import annotations

import numpy as np

from worker.training.datasets import SegmentSet

N_MELS, N_FRAMES = 90, 130


def _segment(genre: int, rng: np.random.Generator) -> np.ndarray:
    mel = -70.0 + 6.0 * rng.standard_normal((N_MELS, N_FRAMES))
    if genre == 0:
        for band in rng.choice(N_MELS, size=4, replace=False):
            mel[band, :] = -10.0
    elif genre == 1:
        period = int(rng.integers(8, 16))
        mel[:, int(rng.integers(0, period)) :: period] = -10.0
    else:
        mel[N_MELS // 2 :, :] += 35.0
    return np.clip(mel, -80.0, 0.0)


def synthetic_set(
    *,
    n_tracks: int,
    segments_per_track: int = 3,
    n_genres: int = 2,
    seed: int = 0,
    first_track_id: int = 0,
) -> SegmentSet:
    """``n_tracks`` tracks (genres round-robin) of ``segments_per_track`` float16 segments."""
    rng = np.random.default_rng(seed)
    mel, labels, track_ids = [], [], []
    for track in range(n_tracks):
        genre = track % n_genres
        for _ in range(segments_per_track):
            mel.append(_segment(genre, rng))
            labels.append(genre)
            track_ids.append(first_track_id + track)
    return SegmentSet(
        np.stack(mel).astype(np.float16),
        np.array(labels, dtype=np.int64),
        np.array(track_ids, dtype=np.int64),
    )
