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


def test_the_numpy_steps_are_librosas(render_audio: RenderAudio) -> None:
    """The mel power, onset envelope and tempo are librosa's, computed without it (its first
    call in a process costs seconds): checked against librosa itself on a real decode."""
    import librosa

    from worker.features import rhythm

    rng = np.random.default_rng(7)
    audio = _decoded(render_audio("mp3", 20.0, "song")) + np.float32(0.01) * rng.standard_normal(
        441000
    ).astype(np.float32)
    mel = librosa.feature.melspectrogram(
        y=audio, sr=22050, n_fft=rhythm.N_FFT, hop_length=rhythm.HOP, n_mels=rhythm.N_MELS
    )
    ours = rhythm._mel_power(audio, 22050)
    assert np.abs(ours - mel).max() <= 1e-4 * mel.max()
    envelope = librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=22050)
    np.testing.assert_allclose(rhythm._onset_envelope(mel), envelope, atol=1e-3)
    frames = librosa.util.frame(
        np.pad(envelope, rhythm.TEMPOGRAM_WINDOW // 2, mode="linear_ramp", end_values=[0, 0]),
        frame_length=rhythm.TEMPOGRAM_WINDOW,
        hop_length=rhythm.TEMPOGRAM_STRIDE,
    )
    window = librosa.filters.get_window("hann", rhythm.TEMPOGRAM_WINDOW, fftbins=True)
    gram = librosa.util.normalize(librosa.autocorrelate(frames * window[:, None], axis=0), axis=0)
    expected = librosa.feature.tempo(tg=gram, sr=22050, hop_length=rhythm.HOP)[0]
    assert rhythm._tempo(envelope, 22050) == pytest.approx(expected)
