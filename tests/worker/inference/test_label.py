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


def predict(tmp_path: Path, *files: Path, threshold: str = "0.35") -> list[dict]:
    env = {"GENRECTL_HOME": str(tmp_path / "home"), "GENRECTL_UNKNOWN_THRESHOLD": threshold}
    result = CliRunner(env=env).invoke(cli, ["predict", *map(str, files), "--json"])
    dispose_engines()
    assert result.exit_code == 0, result.output
    answers: list[dict] = json_of(result)
    return answers


@pytest.mark.parametrize(("threshold", "expect_unknown"), [("0", False), ("1", True)])
def test_predict_applies_the_configured_threshold_with_the_starter_model(
    tmp_path: Path, threshold: str, expect_unknown: bool
) -> None:
    tune = render(tmp_path, "mp3", seconds=13.0, signal="song")
    (answer,) = predict(tmp_path, tune, threshold=threshold)
    assert answer["model"] == starter_metadata()["name"]  # type: ignore[index]
    assert (answer["genre"] == UNKNOWN) is expect_unknown
    assert (answer["reason"] or "").startswith("unclear genre") is expect_unknown
    assert len(answer["top3"]) == 3 and answer["top3"][0][1] == answer["confidence"]
    assert answer["music"] > 0.5 and answer["tags"]  # mn04's view: music, and what it hears


def test_speech_noise_and_a_tone_are_not_music_and_a_tune_is(
    tmp_path: Path, speech_wav: Path
) -> None:
    others = [render(tmp_path, "wav_pcm16", seconds=20.0, signal=s) for s in ("noise", "tone")]
    tune = render(tmp_path, "flac", seconds=20.0, signal="song")
    answers = predict(tmp_path, speech_wav, *others, tune, threshold="0")
    for answer in answers[:3]:
        assert answer["genre"] == UNKNOWN, answer
        assert answer["reason"].startswith("not music: "), answer
    assert "Speech" in answers[0]["reason"]
    assert answers[3]["genre"] != UNKNOWN and answers[3]["reason"] is None, answers[3]
