"""Labelling with a model's per-class thresholds, and the user's global one winning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import cli
from db.engine import dispose_engines
from genrectl.settings import Settings
from tests.audio_fixtures import render
from tests.cli.conftest import json_of
from worker.inference.label import UNKNOWN, class_thresholds, label_from_probabilities
from worker.models.modelfile import LoadedModel

CLASSES = ["blues", "jazz", "metal"]


def _loaded(metrics: dict[str, Any]) -> LoadedModel:
    return LoadedModel(
        model=None,  # type: ignore[arg-type]  # class_thresholds reads classes and metrics
        arch="encoder-head",
        input_size="native",
        classes=CLASSES,
        feature_params={},
        metrics=metrics,
        normalisation={},
        training={},
        sha256="0" * 64,
        path=Path("x.pt"),
    )


def test_the_top_genre_is_held_to_its_own_threshold() -> None:
    per_class = [0.3, 0.6, 0.9]
    jazz = label_from_probabilities(
        np.array([0.2, 0.55, 0.25]), CLASSES, threshold=0.35, thresholds=per_class
    )
    assert jazz.genre == UNKNOWN and jazz.threshold == 0.6
    assert "below the 60% threshold" in (jazz.reason or "")
    blues = label_from_probabilities(
        np.array([0.4, 0.3, 0.3]), CLASSES, threshold=0.5, thresholds=per_class
    )
    assert blues.genre == "blues" and blues.threshold == 0.3


def test_a_threshold_the_user_set_wins_over_the_models() -> None:
    metrics = {"class_thresholds": {"blues": 0.3, "jazz": 0.6, "metal": 0.9}}
    default = Settings.from_env({"GENRECTL_HOME": "/tmp/x"})
    assert class_thresholds(_loaded(metrics), default) is None  # off unless asked for
    asked = Settings.from_env({"GENRECTL_HOME": "/tmp/x", "GENRECTL_PER_CLASS_THRESHOLDS": "1"})
    assert class_thresholds(_loaded(metrics), asked) == [0.3, 0.6, 0.9]
    assert class_thresholds(_loaded({}), asked) is None  # older models: the global one
    explicit = Settings.from_env(
        {
            "GENRECTL_HOME": "/tmp/x",
            "GENRECTL_UNKNOWN_THRESHOLD": "0.5",
            "GENRECTL_PER_CLASS_THRESHOLDS": "1",
        }
    )
    assert explicit.unknown_threshold_explicit
    assert class_thresholds(_loaded(metrics), explicit) is None


def test_the_shipped_starter_carries_a_threshold_per_class(tmp_path: Path) -> None:
    from db.registry import starter_metadata

    meta = starter_metadata()
    assert meta is not None
    found = meta["metrics"]["class_thresholds"]
    assert sorted(found) == sorted(meta["classes"])
    assert all(0.2 <= t <= 0.9 for t in found.values())
    tune = render(tmp_path, "flac", seconds=13.0, signal="song")
    env = {"GENRECTL_HOME": str(tmp_path / "home"), "GENRECTL_PER_CLASS_THRESHOLDS": "1"}
    result = CliRunner(env=env).invoke(cli, ["predict", str(tune), "--json"])
    dispose_engines()
    assert result.exit_code == 0, result.output
    (answer,) = json_of(result)
    # Unclear exactly when the top genre is below its own threshold.
    top = answer["top3"][0][0]
    assert (answer["genre"] == UNKNOWN) is (answer["confidence"] < found[top])


@pytest.mark.parametrize("value", ["track", "album"])
def test_the_scope_setting(value: str) -> None:
    assert Settings.from_env({"GENRECTL_HOME": "/x", "GENRECTL_SCOPE": value}).scope == value


def test_a_bad_scope_setting_is_refused() -> None:
    from genrectl.errors import ConfigError

    with pytest.raises(ConfigError, match="GENRECTL_SCOPE='disc' must be track or album"):
        Settings.from_env({"GENRECTL_HOME": "/x", "GENRECTL_SCOPE": "disc"})
