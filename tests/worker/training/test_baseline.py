from __future__ import annotations

import numpy as np
import pytest

from genrectl.errors import ConfigError
from tests.worker.synthetic_mel import synthetic_set
from worker.training.baseline import (
    baseline_probabilities,
    evaluate_baseline,
    fit_baseline,
    mfcc_statistics,
)


def test_mfcc_statistics_are_means_then_stds_per_segment() -> None:
    data = synthetic_set(n_tracks=3, segments_per_track=2)
    features = mfcc_statistics(mel_db=data.mel)
    assert features.shape == (6, 40) and features.dtype == np.float32
    assert (features[:, 20:] >= 0).all()  # standard deviations
    assert mfcc_statistics(mel_db=data.mel[:0]).shape == (0, 40)


def test_baseline_separates_synthetic_genres_at_segment_and_track_level() -> None:
    train = synthetic_set(n_tracks=18, segments_per_track=2, n_genres=3, seed=1)
    test = synthetic_set(n_tracks=9, segments_per_track=3, n_genres=3, seed=2, first_track_id=50)
    scores = evaluate_baseline(train, test, classes=["drone", "pulse", "noise"])
    assert scores.segment_accuracy >= 0.9  # chance is 1/3
    assert scores.track_accuracy >= 0.9
    assert (scores.n_tracks, scores.n_segments) == (9, 27)


def test_classes_missing_from_training_get_zero_probability() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(20, 4))
    labels = np.array([0, 2] * 10)
    model = fit_baseline(features, labels)
    probs = baseline_probabilities(model, features[:5], n_classes=3)
    assert probs.shape == (5, 3)
    assert (probs[:, 1] == 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ConfigError, match="20 feature rows but 3 labels"):
        fit_baseline(features, labels[:3])
