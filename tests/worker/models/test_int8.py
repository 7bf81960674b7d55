"""msd_fcn with int8 convolutions: close to the float32 network on music, built from the
committed activation parameters, and a feature set of its own."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import soundfile as sf
import torch

from genrectl.errors import ModelError
from tests.audio_fixtures import render
from worker.audio.decode import resample
from worker.features.encoder import EncoderParams, msd_fcn_features
from worker.models.encoders import MSD_FCN, int8
from worker.models.encoders.fcn import WINDOW_SAMPLES, fuse_for_inference, load_fcn


@pytest.fixture(scope="module")
def fused() -> torch.nn.Module:
    return fuse_for_inference(load_fcn(weights_path=MSD_FCN.weights_path))


def _window(tmp_path: Path) -> torch.Tensor:
    audio, rate = sf.read(render(tmp_path, "wav_pcm16", seconds=30.0, signal="song"))
    audio = (audio / abs(audio).max()).astype("float32")
    return torch.from_numpy(resample(audio, rate=rate, target_rate=16000)[:WINDOW_SAMPLES])[None]


def test_the_int8_network_hears_a_tune_as_the_float32_one_does(
    tmp_path: Path, fused: torch.nn.Module
) -> None:
    window = _window(tmp_path)
    quantized = int8.quantize_for_inference(fused)
    with torch.inference_mode():
        exact, fast = fused(window), quantized(window)
    similarity = torch.nn.functional.cosine_similarity(exact.emb64, fast.emb64)
    assert float(similarity) > 0.98
    assert exact.logits.argmax() == fast.logits.argmax()
    assert float((exact.logits - fast.logits).abs().max()) < 1.0
    # Quantized for real: the blocks hold int8 convolutions, the first one does not.
    kinds = {type(m).__module__ for m in quantized.layer2.modules()}
    assert any("quantized" in kind for kind in kinds)
    assert not any("quantized" in type(m).__module__ for m in quantized.layer1.modules())


def test_parameters_that_do_not_fit_are_refused(tmp_path: Path, fused: torch.nn.Module) -> None:
    params = int8.read_params()
    del params["layer3"]["activation_post_process_1"]
    with pytest.raises(ModelError, match="do not fit block layer3"):
        int8.quantize_for_inference(fused, params)
    broken = tmp_path / "int8.json"
    broken.write_text(json.dumps({"layer2": {}}))
    with pytest.raises(ModelError, match="not for blocks"):
        int8.read_params(broken)


def test_precision_is_part_of_the_feature_set() -> None:
    shipped = msd_fcn_features()
    assert shipped.precision == "int8"
    exact = replace(shipped, precision="float32")
    assert exact.version != shipped.version
    assert "precision" not in exact.to_dict()  # float32 sets written before it keep theirs
    assert EncoderParams.from_dict(shipped.to_dict()) == shipped
    with pytest.raises(ValueError, match="precision='int8' must be one of"):
        EncoderParams(encoder="mn04", precision="int8")
