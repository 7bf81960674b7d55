from __future__ import annotations

from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from genrectl.errors import ConfigError
from worker.training.datasets import (
    PITCH_STEPS,
    SegmentSet,
    Split,
    augmentation_steps,
    discover_labelled_folder,
    kfold,
    normalise_track_key,
    pitch_shift_segments,
    read_split_files,
    split_tracks,
)

GENRES = ["blues", "classical", "country", "disco", "hiphop"]


def _gtzan_like(n_per_genre: int = 10) -> tuple[list[str], list[str]]:
    keys = [f"{g}/{g}.{i:05d}" for g in GENRES for i in range(n_per_genre)]
    return keys, [k.split("/")[0] for k in keys]


def _assert_partition(split: Split, keys: list[str]) -> None:
    parts = [set(split.train), set(split.val), set(split.test)]
    for a, b in combinations(parts, 2):
        assert not a & b, f"tracks in two parts: {sorted(a & b)[:3]}"
    assert set().union(*parts) == set(keys)
    assert sum(map(len, parts)) == len(keys)


def test_discover_finds_audio_in_genre_folders(tmp_path: Path) -> None:
    for name in [
        "blues/blues.00001.wav",
        "blues/b.FLAC",
        "rock/live/r.mp3",
        "rock/notes.txt",
        "rock/.hidden.wav",
        ".cache/x.wav",
        "loose.wav",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    tracks = discover_labelled_folder(tmp_path)
    assert [(t.key, t.genre) for t in tracks] == [
        ("blues/b", "blues"),
        ("blues/blues.00001", "blues"),
        ("rock/r", "rock"),
    ]
    assert tracks[2].path == tmp_path / "rock/live/r.mp3"


def test_discover_rejects_a_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        discover_labelled_folder(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no audio files"):
        discover_labelled_folder(tmp_path)


def test_split_is_stratified_disjoint_and_seeded() -> None:
    keys, labels = _gtzan_like()
    split = split_tracks(keys, labels, seed=1)
    _assert_partition(split, keys)
    assert (len(split.train), len(split.val), len(split.test)) == (40, 5, 5)
    assert Counter(k.split("/")[0] for k in split.test) == dict.fromkeys(GENRES, 1)
    assert split_tracks(list(reversed(keys)), list(reversed(labels)), seed=1) == split
    assert split_tracks(keys, labels, seed=2) != split


def test_kfold_tests_every_track_once_and_never_leaks() -> None:
    keys, labels = _gtzan_like()
    folds = kfold(keys, labels, k=5, seed=0)
    assert len(folds) == 5
    for fold in folds:
        _assert_partition(fold, keys)
        assert Counter(k.split("/")[0] for k in fold.test) == dict.fromkeys(GENRES, 2)
        assert len(fold.val) == 5
    tested = [k for fold in folds for k in fold.test]
    assert sorted(tested) == sorted(keys)
    assert kfold(keys, labels, k=5, seed=0) == folds


def test_kfold_with_fewer_tracks_than_folds_in_a_genre() -> None:
    keys, labels = _gtzan_like(3)
    folds = kfold(keys, labels, k=5, seed=0)
    for fold in folds:
        _assert_partition(fold, keys)
    assert max(len(f.test) for f in folds) - min(len(f.test) for f in folds) <= 1


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("blues/blues.00001.wav", "blues/blues.00001"),
        ("blues.00001", "blues/blues.00001"),
        ("genres/jazz/jazz.00054.au", "jazz/jazz.00054"),
        ("  rock/rock.00003.wav \n", "rock/rock.00003"),
        ("my.song", "my.song"),
    ],
)
def test_split_file_lines_become_track_keys(line: str, key: str) -> None:
    assert normalise_track_key(line) == key


def test_read_split_files(tmp_path: Path) -> None:
    files = {
        "train": "# fault-filtered\nblues/blues.00001.wav\nblues/blues.00002.wav\n",
        "val": "blues.00003\n\n",
        "test": "classical/classical.00001.wav\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    split = read_split_files(tmp_path / "train", tmp_path / "val", tmp_path / "test")
    assert split == Split(
        ["blues/blues.00001", "blues/blues.00002"],
        ["blues/blues.00003"],
        ["classical/classical.00001"],
    )
    (tmp_path / "test").write_text("blues/blues.00002.wav\n")
    with pytest.raises(ConfigError, match=r"'blues/blues\.00002' is in both"):
        read_split_files(tmp_path / "train", tmp_path / "val", tmp_path / "test")


def test_segment_set_selects_tracks_and_checks_shapes() -> None:
    data = SegmentSet(np.zeros((6, 2, 3)), np.arange(6) % 2, np.array([1, 1, 2, 2, 3, 3]))
    assert data.of_tracks([3, 1]).track_ids.tolist() == [1, 1, 3, 3]
    assert len(SegmentSet.concatenate([data, data])) == 12
    with pytest.raises(ConfigError, match="labels"):
        SegmentSet(np.zeros((6, 2, 3)), np.zeros(5), np.zeros(6))


def test_augmentation_steps_are_per_track_deterministic_and_cover_the_range() -> None:
    steps = [augmentation_steps(f"rock/rock.{i:05d}", seed=0) for i in range(300)]
    assert set(steps) == set(PITCH_STEPS)
    assert steps == [augmentation_steps(f"rock/rock.{i:05d}", seed=0) for i in range(300)]
    assert steps != [augmentation_steps(f"rock/rock.{i:05d}", seed=1) for i in range(300)]


def _dominant_hz(audio: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / sr)[spectrum.argmax()])


def test_pitch_shift_moves_a_tone_by_the_requested_semitones() -> None:
    sr = 22050
    t = np.arange(sr) / sr
    audio = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 330 * t)])
    shifted = pitch_shift_segments(audio.astype(np.float32), sr=sr, n_steps=5)
    assert shifted.shape == audio.shape and shifted.dtype == np.float32
    for original, moved in zip(audio, shifted, strict=True):
        expected = _dominant_hz(original, sr) * 2 ** (5 / 12)
        assert _dominant_hz(moved, sr) == pytest.approx(expected, rel=0.01)


def test_augmented_segments_featurize_like_the_originals() -> None:
    features = pytest.importorskip("worker.features.mel")
    params = features.FeatureParams()
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((2, params.segment_samples))).astype(np.float32)
    shifted = pitch_shift_segments(audio, sr=params.sample_rate, n_steps=-7)
    mel = features.mel_db(segments=shifted, params=params)
    assert mel.shape == (2, params.n_mels, params.n_frames) == (2, 90, 130)
    assert np.isfinite(mel).all()
