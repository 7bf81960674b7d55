from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from genrectl.errors import ModelError
from tests.worker.synthetic_mel import synthetic_set
from worker.inference.predict import predict_segments
from worker.models.cnn import build_model, get_normalisation, set_normalisation
from worker.models.modelfile import file_sha256, load_model, save_model

CLASSES = ["blues", "classical", "metal"]


class _RunsCodeWhenUnpickled:
    """What a tampered model file could carry: unpickling it would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def _save(path: Path, arch: str = "cnn") -> tuple[torch.nn.Module, str]:
    torch.manual_seed(0)
    model = build_model(arch=arch, n_classes=len(CLASSES))
    set_normalisation(model, mean=-41.5, std=17.25)
    sha = save_model(
        path,
        model=model,
        arch=arch,
        input_size="native",
        classes=CLASSES,
        feature_params={"sample_rate": 22050, "n_mels": 90},
        metrics={"track_accuracy": np.float64(0.75), "confusion": np.eye(3, dtype=np.int64)},
        normalisation=get_normalisation(model),
        training={"epochs": 3, "checkpoint": Path("/tmp/run")},
    )
    return model, sha


def test_saved_model_loads_back_to_the_same_predictions(tmp_path: Path) -> None:
    path = tmp_path / "models" / "genre.pt"
    model, sha = _save(path)
    assert sha == file_sha256(path)
    assert not [p for p in path.parent.iterdir() if p != path]  # no temporary file left
    loaded = load_model(path, expected_sha256=sha)
    assert (loaded.arch, loaded.input_size, loaded.classes) == ("cnn", "native", CLASSES)
    assert loaded.metrics == {"track_accuracy": 0.75, "confusion": np.eye(3).tolist()}
    assert loaded.training["checkpoint"] == "/tmp/run"
    assert get_normalisation(loaded.model) == {"mean": -41.5, "std": 17.25}
    assert not loaded.model.training
    mel = synthetic_set(n_tracks=4, segments_per_track=1).mel
    np.testing.assert_array_equal(predict_segments(model, mel), predict_segments(loaded.model, mel))


def test_a_file_whose_sha256_differs_from_the_record_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "genre.pt"
    _, sha = _save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as error:
        load_model(path, expected_sha256=sha)
    message = str(error.value)
    assert str(path) in message and sha in message and file_sha256(path) in message


def test_a_file_that_would_run_code_is_refused_and_the_code_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "genrectl-model", "payload": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(ModelError, match=re.escape(str(path))):
        load_model(path, expected_sha256=file_sha256(path))  # a matching hash is not enough
    assert not marker.exists()
    torch.load(path, weights_only=False)  # control: an unguarded load does run it
    assert marker.exists()


def test_files_that_are_not_genrectl_models_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / "weights.pt"
    torch.save(build_model(arch="cnn", n_classes=3).state_dict(), plain)
    with pytest.raises(ModelError, match="not a genrectl model file"):
        load_model(plain)
    with pytest.raises(ModelError, match="cannot read"):
        load_model(tmp_path / "missing.pt")


def test_save_refuses_values_a_model_file_cannot_hold(tmp_path: Path) -> None:
    model = build_model(arch="cnn", n_classes=3)
    with pytest.raises(ModelError, match=r"metrics\.when holds a object"):
        save_model(
            tmp_path / "m.pt",
            model=model,
            arch="cnn",
            input_size="native",
            classes=CLASSES,
            feature_params={},
            metrics={"when": object()},
            normalisation={},
            training={},
        )
    with pytest.raises(ModelError, match="densenet121"):
        save_model(
            tmp_path / "m.pt",
            model=model,
            arch="densenet121",
            input_size="native",
            classes=CLASSES,
            feature_params={},
            metrics={},
            normalisation={},
            training={},
        )


def test_densenet_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "dense.pt"
    _, sha = _save(path, arch="densenet121")
    assert load_model(path, expected_sha256=sha).model.arch == "densenet121"
