"""Mood scores from the encoders' stored logits: each mood the largest of its classes'
mean window probabilities, across both encoders."""

from __future__ import annotations

import numpy as np
import pytest

from genrectl.moods import MOOD_CLASSES, THRESHOLDS, check_mood, parse_tempo, track_mood_names
from worker.features.encoder import mn04_features, msd_fcn_features
from worker.inference.moods import mood_scores
from worker.inference.predict import Rows
from worker.models.encoders import class_names


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _rows(encoder: str, owner: list[int], set_prob: dict[str, list[float]]) -> Rows:
    names = class_names(encoder)
    logits = np.full((len(owner), len(names)), _logit(1e-4), np.float32)
    for name, per_row in set_prob.items():
        logits[:, names.index(name)] = [_logit(p) for p in per_row]
    return Rows({"logits": logits}, np.asarray(owner, np.int64))


def test_every_mood_class_is_one_the_encoders_have() -> None:
    for mood, by_encoder in MOOD_CLASSES.items():
        for encoder, classes in by_encoder.items():
            assert set(classes) <= set(class_names(encoder)), mood
        assert mood in THRESHOLDS


def test_scores_are_window_means_and_the_largest_across_encoders() -> None:
    mn04 = _rows("mn04", [7, 7, 9], {"Happy music": [0.1, 0.3, 0.01], "Sad music": [0.02] * 3})
    fcn = _rows("msd_fcn", [7, 9], {"happy": [0.05, 0.4], "Mellow": [0.2, 0.01]})
    scores = mood_scores([mn04_features(), msd_fcn_features()], [mn04, fcn])
    assert scores[7]["happy"] == pytest.approx(0.2, abs=1e-3)  # mn04's mean beats msd_fcn
    assert scores[9]["happy"] == pytest.approx(0.4, abs=1e-3)  # msd_fcn's beats mn04
    assert scores[7]["mellow"] == pytest.approx(0.2, abs=1e-3)
    assert scores[7]["sad"] == pytest.approx(0.02, abs=1e-3)
    assert set(scores[7]) == set(MOOD_CLASSES)
    assert track_mood_names(scores[7])[:2] == ["happy", "mellow"]


def test_a_model_without_encoder_logits_gives_no_moods() -> None:
    mel = Rows({"mel": np.zeros((2, 90, 130), np.float32)}, np.asarray([1, 1]))
    from worker.features.mel import FeatureParams

    assert mood_scores([FeatureParams()], [mel]) == {}


def test_moods_and_tempo_ranges_are_checked() -> None:
    assert check_mood(" Happy ") == "happy"
    with pytest.raises(ValueError, match="unknown mood 'glad'; known: happy, sad"):
        check_mood("glad")
    assert parse_tempo("100-130") == (100.0, 130.0)
    assert parse_tempo("120") == (120.0, 120.0)
    for bad in ("130-100", "fast", "0-50", "1-2-3", "-5"):
        with pytest.raises(ValueError, match="must be a tempo range in BPM"):
            parse_tempo(bad)
