"""Feature parameters, and the torchaudio mel matching the reference's librosa mel."""

from __future__ import annotations

import json
from typing import Any

import librosa
import numpy as np
import pytest

from tests.audio_fixtures import clicks, noise, tone
from worker.features.mel import FeatureParams, mel_db

PARAMS = FeatureParams()
SR = PARAMS.sample_rate


def _signals() -> np.ndarray:
    """Real signals, one 6 s segment each: [n, 132300] float32."""
    seconds, n = PARAMS.segment_seconds, PARAMS.segment_samples
    t = np.arange(n) / SR
    rows = [
        tone(seconds=seconds, sample_rate=SR, amplitude=0.5)[:, 0],
        tone(seconds=seconds, sample_rate=SR, freq=3000.0)[:, 0]
        + noise(seconds=seconds, sample_rate=SR, amplitude=0.01)[:, 0],
        noise(seconds=seconds, sample_rate=SR, amplitude=0.1, seed=7)[:, 0],
        noise(seconds=seconds, sample_rate=SR, amplitude=1e-4, seed=8)[:, 0],
        clicks(seconds=seconds, sample_rate=SR)[:, 0],
        0.3 * np.sin(2 * np.pi * (100 + 800 * t) * t),  # chirp 100 Hz -> 9.7 kHz
    ]
    return np.stack(rows).astype(np.float32)


def _librosa_reference(segment: np.ndarray) -> np.ndarray:
    power = librosa.feature.melspectrogram(
        y=segment, sr=SR, n_fft=2048, win_length=2048, hop_length=1024, n_mels=90
    )
    return librosa.power_to_db(power, ref=np.max, amin=1e-10, top_db=80.0)


def test_mel_db_matches_librosa_melspectrogram_and_power_to_db() -> None:
    """Same numbers as the reference's librosa pipeline, to float32 rounding.

    Measured on these signals (tones, tone + noise, white noise at -20 and -80 dBFS,
    clicks, a chirp): max |ours - librosa| = 9.0e-4 dB over every cell of every segment,
    floor included (the chirp; 2.5e-4 dB or less on the others), evenly spread over levels
    from 0 to -80 dB. Asserted: < 5e-3 dB, far below float16 storage rounding (0.03 dB).
    """
    segments = _signals()
    ours = mel_db(segments=segments, params=PARAMS)
    reference = np.stack([_librosa_reference(segment) for segment in segments])
    assert ours.shape == reference.shape == (len(segments), 90, 130)
    assert np.abs(ours - reference).max() < 5e-3


def test_mel_db_range_shape_and_dtype() -> None:
    out = mel_db(segments=_signals(), params=PARAMS)
    assert out.dtype == np.float32
    assert np.allclose(out.max(axis=(1, 2)), 0.0)  # each segment's own peak is 0 dB
    assert out.min() >= -80.0
    assert out.min() == -80.0  # the pure tone reaches the floor


def test_an_all_zero_segment_gives_zeros_not_nan() -> None:
    out = mel_db(segments=np.zeros((2, PARAMS.segment_samples), np.float32), params=PARAMS)
    assert out.shape == (2, 90, 130) and not out.any()


def test_no_segments_give_an_empty_array() -> None:
    out = mel_db(segments=np.zeros((0, PARAMS.segment_samples), np.float32), params=PARAMS)
    assert out.shape == (0, 90, 130)


def test_batches_do_not_change_results() -> None:
    segments = np.repeat(_signals(), 7, axis=0)  # 42 rows: more than one internal batch
    together = mel_db(segments=segments, params=PARAMS)
    alone = mel_db(segments=segments[-1:], params=PARAMS)
    np.testing.assert_allclose(together[-1], alone[0], atol=1e-4)


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        (np.zeros(132300, np.float32), r"shape \(132300,\)"),
        (np.zeros((1, 1000), np.float32), r"shape \(1, 1000\) must be \[n, 132300\]"),
        (np.full((1, 132300), np.nan, np.float32), "NaN"),
    ],
)
def test_mel_db_refuses_bad_input(segments: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mel_db(segments=segments, params=PARAMS)


def test_other_params_change_the_shape() -> None:
    params = FeatureParams(n_mels=64, hop_length=512, segment_seconds=3.0)
    out = mel_db(segments=np.zeros((1, params.segment_samples), np.float32), params=params)
    assert out.shape == (1, 64, 1 + 66150 // 512)


def test_default_params_are_the_reference_method() -> None:
    assert PARAMS.segment_samples == 132300
    assert PARAMS.n_frames == 130
    # Pinned: changing it orphans every shard already written. Bump only on purpose.
    assert PARAMS.version == "446e64471123"  # 2: soxr resampling in the decode


def test_version_depends_on_every_field_and_not_on_int_vs_float() -> None:
    variants = [
        FeatureParams(sample_rate=16000),
        FeatureParams(n_fft=4096),
        FeatureParams(win_length=1024),
        FeatureParams(hop_length=512),
        FeatureParams(n_mels=128),
        FeatureParams(segment_seconds=3.0),
        FeatureParams(top_db=60.0),
    ]
    versions = {PARAMS.version, *(params.version for params in variants)}
    assert len(versions) == len(variants) + 1
    assert all(len(v) == 12 and int(v, 16) >= 0 for v in versions)
    assert FeatureParams(segment_seconds=6, top_db=80).version == PARAMS.version


def test_dict_round_trip_through_json() -> None:
    params = FeatureParams(n_mels=64, segment_seconds=3.0)
    restored = FeatureParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert restored == params and restored.version == params.version
    assert FeatureParams.from_dict({}) == PARAMS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"n_mels": 0}, "n_mels=0 must be a positive integer"),
        ({"hop_length": -1}, "hop_length=-1"),
        ({"n_fft": 2048.0}, "n_fft=2048.0"),
        ({"sample_rate": True}, "sample_rate=True"),
        ({"segment_seconds": float("nan")}, "segment_seconds=nan"),
        ({"top_db": "80"}, "top_db='80'"),
        ({"win_length": 4096}, "win_length=4096 must not exceed n_fft=2048"),
        ({"n_melz": 90}, "unknown feature parameter 'n_melz'"),
    ],
)
def test_from_dict_names_the_bad_value(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeatureParams.from_dict(data)
