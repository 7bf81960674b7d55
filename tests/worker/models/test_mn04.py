"""The mn04 port: the bundled weights load only when they are the right file, and the
encoder hears what real files hold (speech from espeak-ng, a synthesized tune, GTZAN music
when GENRECTL_GTZAN_DIR is set)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from genrectl.errors import ModelError
from tests.audio_fixtures import render
from worker.features.compute import featurize_file
from worker.features.encoder import EncoderParams
from worker.models.encoders import MN04, class_names
from worker.models.encoders.mn04 import fuse_for_inference, load_mn04

PARAMS = EncoderParams()


def classes_of(path: Path) -> dict[str, float]:
    """Mean AudioSet probabilities of a file's windows, by class name."""
    featurized = featurize_file(path, sets=[PARAMS], max_segments=20, min_seconds=1.0)
    logits = featurized.rows[PARAMS.version].arrays["logits"]
    probabilities = (1 / (1 + np.exp(-logits))).mean(axis=0)
    return dict(zip(class_names("mn04"), probabilities.tolist(), strict=True))


def test_a_spoken_sentence_is_speech_not_music(speech_wav: Path) -> None:
    heard = classes_of(speech_wav)
    assert heard["Speech"] > 0.5 and heard["Music"] < 0.2, (heard["Speech"], heard["Music"])


def test_a_synthesized_tune_in_a_lossy_format_is_music(tmp_path: Path) -> None:
    heard = classes_of(render(tmp_path, "mp3", seconds=12.0, signal="song"))
    assert heard["Music"] > 0.6 and heard["Speech"] < 0.2, (heard["Music"], heard["Speech"])


def test_a_pure_tone_is_a_sine_wave(tmp_path: Path) -> None:
    heard = classes_of(render(tmp_path, "wav_pcm16", seconds=12.0, signal="tone"))
    assert heard["Sine wave"] > heard["Music"]


@pytest.mark.gtzan
@pytest.mark.skipif(
    not os.environ.get("GENRECTL_GTZAN_DIR"), reason="set GENRECTL_GTZAN_DIR to a GTZAN folder"
)
def test_gtzan_music_is_music_and_its_genre_class_fires() -> None:
    root = Path(os.environ["GENRECTL_GTZAN_DIR"])
    heard = classes_of(root / "reggae" / "reggae.00000.wav")
    genres = ["Blues", "Classical music", "Country", "Disco", "Hip hop music", "Jazz"]
    genres += ["Heavy metal", "Pop music", "Reggae", "Rock music"]
    assert heard["Music"] > 0.8 and max(genres, key=heard.__getitem__) == "Reggae"


def test_the_fused_inference_module_gives_the_ports_outputs(tmp_path: Path) -> None:
    import soundfile as sf
    import torch
    import torchaudio

    audio, rate = sf.read(render(tmp_path, "wav_pcm16", seconds=12.0, signal="song"))
    waveform = torchaudio.functional.resample(torch.from_numpy(audio).float(), rate, 32000)
    windows = waveform[: 2 * 160_000].reshape(2, 160_000)
    port = load_mn04(weights_path=MN04.weights_path)
    with torch.inference_mode():
        a, b = port(windows), fuse_for_inference(port)(windows)
    assert torch.allclose(a.logits, b.logits, atol=1e-3)
    assert torch.allclose(a.emb512, b.emb512, atol=1e-3)


def test_weights_that_are_not_the_shipped_file_are_refused_by_name(tmp_path: Path) -> None:
    altered = tmp_path / MN04.weights
    shutil.copyfile(MN04.weights_path, altered)
    with altered.open("r+b") as handle:
        handle.seek(4096)
        handle.write(b"\x00" * 8)
    with pytest.raises(ModelError, match=rf"{altered.name}.*expected {MN04.sha256}"):
        load_mn04(weights_path=altered)
    with pytest.raises(ModelError, match=rf"cannot read encoder weights.*sha256 {MN04.sha256}"):
        load_mn04(weights_path=tmp_path / "missing.pt")


def test_a_track_shorter_than_a_window_is_repeated_to_fill_it_and_says_so(
    tmp_path: Path,
) -> None:
    clip = render(tmp_path, "wav_pcm16", seconds=2.5, signal="song")
    featurized = featurize_file(clip, sets=[PARAMS], max_segments=20, min_seconds=1.0)
    rows = featurized.rows[PARAMS.version]
    assert rows.starts_s == [0.0] and rows.arrays["logits"].shape == (1, 527)
    assert featurized.note == "2.5 s: shorter than one 10 s window, repeated to fill it"
