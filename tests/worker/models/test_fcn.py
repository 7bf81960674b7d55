"""The msd_fcn port: the bundled weights load only when they are the right file, and the
tagger hears what real files hold (a synthesized tune; GTZAN genres when
GENRECTL_GTZAN_DIR is set)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from genrectl.errors import ModelError
from tests.audio_fixtures import render
from worker.features.compute import featurize_file
from worker.features.encoder import msd_fcn_features
from worker.models.encoders import MSD_FCN, class_names
from worker.models.encoders.fcn import WINDOW_SAMPLES, fuse_for_inference, load_fcn

PARAMS = msd_fcn_features()


def top_tags(path: Path, n: int = 3) -> list[str]:
    """The ``n`` most probable Last.fm tags of a file's window."""
    featurized = featurize_file(path, sets=[PARAMS], max_segments=20, min_seconds=1.0)
    logits = featurized.rows[PARAMS.version].arrays["logits"].mean(axis=0)
    return [class_names("msd_fcn")[i] for i in np.argsort(-logits)[:n]]


def test_the_weights_fit_the_port_and_give_tags_and_an_embedding() -> None:
    model = load_fcn(weights_path=MSD_FCN.weights_path)  # strict: every key, every shape
    with torch.inference_mode():
        out = model(torch.zeros(2, WINDOW_SAMPLES))
    assert out.logits.shape == (2, 50) and out.emb64.shape == (2, 64)


def test_the_fused_inference_module_gives_the_ports_outputs(tmp_path: Path) -> None:
    import soundfile as sf

    audio, rate = sf.read(render(tmp_path, "wav_pcm16", seconds=30.0, signal="song"))
    assert rate == 22050
    waveform = torch.from_numpy(audio[: WINDOW_SAMPLES * rate // 16000]).float()
    waveform = torchaudio.functional.resample(waveform, rate, 16000)[None, :WINDOW_SAMPLES]
    port = load_fcn(weights_path=MSD_FCN.weights_path)
    with torch.inference_mode():
        a, b = port(waveform), fuse_for_inference(port)(waveform)
    assert torch.allclose(a.logits, b.logits, atol=1e-4)
    assert torch.allclose(a.emb64, b.emb64, atol=1e-4)


def test_weights_that_are_not_the_shipped_file_are_refused_by_name(tmp_path: Path) -> None:
    altered = tmp_path / MSD_FCN.weights
    shutil.copyfile(MSD_FCN.weights_path, altered)
    with altered.open("r+b") as handle:
        handle.seek(2048)
        handle.write(b"\x01" * 8)
    with pytest.raises(ModelError, match=rf"{altered.name}.*expected {MSD_FCN.sha256}"):
        load_fcn(weights_path=altered)


def test_a_synthesized_tune_sounds_electronic(tmp_path: Path) -> None:
    # The fixture's instruments are oscillators: Last.fm's listeners would say so too.
    assert top_tags(render(tmp_path, "flac", seconds=30.0, signal="song"))[0] == "electronic"


def test_a_clip_shorter_than_the_window_is_repeated_to_fill_it(tmp_path: Path) -> None:
    clip = render(tmp_path, "wav_pcm16", seconds=2.5, signal="song")
    featurized = featurize_file(clip, sets=[PARAMS], max_segments=20, min_seconds=1.0)
    rows = featurized.rows[PARAMS.version]
    assert rows.starts_s == [0.0] and rows.arrays["emb64"].shape == (1, 64)
    assert featurized.note == "2.5 s: shorter than one 29 s window, repeated to fill it"


@pytest.mark.gtzan
@pytest.mark.skipif(
    not os.environ.get("GENRECTL_GTZAN_DIR"), reason="set GENRECTL_GTZAN_DIR to a GTZAN folder"
)
@pytest.mark.parametrize(
    ("genre", "tag"),
    [("metal", "metal"), ("hiphop", "Hip-Hop"), ("jazz", "jazz"), ("country", "country")],
)
def test_gtzan_genres_get_their_last_fm_tag(genre: str, tag: str) -> None:
    root = Path(os.environ["GENRECTL_GTZAN_DIR"])
    assert tag in top_tags(root / genre / f"{genre}.00001.wav")
