from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import cli
from db.engine import dispose_engines
from db.registry import starter_metadata
from tests.audio_fixtures import render
from tests.cli.conftest import json_of
from worker.inference.label import UNKNOWN, label_from_probabilities

CLASSES = ["blues", "jazz", "rock"]


def test_confident_answer_keeps_its_genre_and_top3_in_order() -> None:
    label = label_from_probabilities(np.array([0.1, 0.7, 0.2]), CLASSES, threshold=0.5)
    assert (label.genre, label.top_genre, label.confidence) == ("jazz", "jazz", 0.7)
    assert [g for g, _ in label.top3] == ["jazz", "rock", "blues"]
    assert label.probabilities == [0.1, 0.7, 0.2]


def test_below_the_threshold_the_genre_is_unknown_but_the_top_genre_is_kept() -> None:
    label = label_from_probabilities(np.array([0.3, 0.34, 0.36]), CLASSES, threshold=0.5)
    assert (label.genre, label.top_genre) == (UNKNOWN, "rock")


@pytest.mark.parametrize(("threshold", "expect_unknown"), [("0", False), ("1", True)])
def test_predict_applies_the_configured_threshold_with_the_starter_model(
    tmp_path: Path, threshold: str, expect_unknown: bool
) -> None:
    song = render(tmp_path, "wav_pcm16", seconds=13.0, signal="noise")
    env = {"GENRECTL_HOME": str(tmp_path / "home"), "GENRECTL_UNKNOWN_THRESHOLD": threshold}
    result = CliRunner(env=env).invoke(cli, ["predict", str(song), "--json"])
    dispose_engines()
    assert result.exit_code == 0, result.output
    (answer,) = json_of(result)
    assert answer["model"] == starter_metadata()["name"]  # type: ignore[index]
    assert (answer["genre"] == UNKNOWN) is expect_unknown
    assert len(answer["top3"]) == 3 and answer["top3"][0][1] == answer["confidence"]
