"""Tempo and energy from real files: the synthesized 120 BPM tune is measured at 120 BPM
through every codec, and is more energetic than a steady tone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from worker.audio.decode import load_windows
from worker.audio.windows import WindowSpec
from worker.features.compute import featurize_file
from worker.features.mel import FeatureParams
from worker.features.rhythm import longest_window, measure_rhythm

RenderAudio = Callable[..., Path]


def _decoded(path: Path, seconds: float = 20.0) -> np.ndarray:
    _, (windows,) = load_windows(
        path, sample_rate=22050, specs=[WindowSpec(seconds, 1)], min_seconds=1.0
    )
    return windows.audio[0]


@pytest.mark.parametrize("fmt", ["wav_pcm16", "mp3", "flac", "ogg_vorbis", "m4a_aac"])
def test_the_120_bpm_tune_is_measured_at_120_bpm(render_audio: RenderAudio, fmt: str) -> None:
    path = render_audio(fmt, seconds=20.0, signal="song")
    rhythm = measure_rhythm(audio=_decoded(path), sample_rate=22050)
    assert rhythm is not None
    assert rhythm.tempo_bpm == pytest.approx(120, rel=0.03)
    assert 0.0 <= rhythm.energy <= 1.0


def test_energy_ignores_the_level_and_hears_brightness(render_audio: RenderAudio) -> None:
    song = _decoded(render_audio("wav_pcm16", 20.0, "song"))
    loud = measure_rhythm(audio=song, sample_rate=22050)
    quiet = measure_rhythm(audio=song * np.float32(0.05), sample_rate=22050)
    assert loud is not None and quiet is not None
    assert quiet.energy == pytest.approx(loud.energy, abs=0.01)  # a quiet master of it
    tone = measure_rhythm(
        audio=_decoded(render_audio("wav_pcm16", 20.0, "tone")), sample_rate=22050
    )
    noise = measure_rhythm(
        audio=_decoded(render_audio("wav_pcm16", 20.0, "noise")), sample_rate=22050
    )
    assert tone is not None and noise is not None
    assert noise.energy > tone.energy + 0.2  # broadband hiss against one dark sine


def test_too_short_or_silent_audio_has_no_rhythm() -> None:
    assert measure_rhythm(audio=np.zeros(22050 * 10, np.float32), sample_rate=22050) is None
    short = np.random.default_rng(0).standard_normal(22050 * 2).astype(np.float32)
    assert measure_rhythm(audio=short, sample_rate=22050) is None


def test_longest_window_takes_the_middle_of_the_longest_unpadded_spec() -> None:
    short = np.zeros((3, 10), np.float32)
    long = np.arange(3 * 20, dtype=np.float32).reshape(3, 20)
    middle = longest_window([(6.0, short, False), (29.0, long, False)])
    assert middle is not None and middle.tolist() == long[1].tolist()
    fallback = longest_window([(6.0, short, False), (29.0, long, True)])
    assert fallback is not None and fallback.shape == (10,)
    assert longest_window([(29.0, long, True)]) is None


def test_featurizing_measures_the_rhythm_from_its_own_decode(render_audio: RenderAudio) -> None:
    featurized = featurize_file(
        render_audio("flac", 20.0, "song"), sets=[FeatureParams()], max_segments=3, min_seconds=1
    )
    assert featurized.rhythm is not None
    assert featurized.rhythm.tempo_bpm == pytest.approx(120, rel=0.03)
