from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_recall_fscore_support

from tests.worker.synthetic_mel import synthetic_set
from worker.models.cnn import build_model
from worker.training.datasets import SegmentSet
from worker.training.evaluation import (
    evaluate_model,
    plot_confusion,
    plot_history,
    predict_segments,
    score_probabilities,
    track_probabilities,
)
from worker.training.loop import EpochStats

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_track_prediction_is_the_mean_of_segment_probabilities_not_a_vote() -> None:
    probs = np.array([[0.6, 0.4], [0.6, 0.4], [0.0, 1.0], [0.9, 0.1]], dtype=np.float32)
    track_ids = np.array([5, 5, 5, 2])
    per_track = track_probabilities(probs, track_ids)
    assert list(per_track) == [5, 2]  # order of first appearance
    np.testing.assert_allclose(per_track[5], [0.4, 0.6], rtol=1e-6)
    # Two of track 5's three segments say class 0, but the ensemble says class 1.
    data = SegmentSet(np.zeros((4, 2, 2)), np.array([1, 1, 1, 0]), track_ids)
    scores = score_probabilities(probs, data, classes=["a", "b"])
    assert scores.segment_accuracy == pytest.approx(0.5)
    assert scores.track_accuracy == 1.0
    assert (scores.n_segments, scores.n_tracks) == (4, 2)


def test_confusion_rows_are_true_columns_predicted_and_scores_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 10)
    probs = rng.dirichlet(np.ones(3), size=30).astype(np.float32)
    probs[:10, 0] += 0.5  # class 0 mostly right, the rest noise
    data = SegmentSet(np.zeros((30, 2, 2)), labels, np.arange(30))  # one segment per track
    scores = score_probabilities(probs, data, classes=["x", "y", "z"])
    predicted = probs.argmax(axis=1)
    for true, pred in [(0, 0), (1, 2), (2, 0)]:
        count = int(((labels == true) & (predicted == pred)).sum())
        assert scores.track_confusion[true, pred] == count
    assert scores.segment_confusion.sum() == 30
    assert scores.segment_confusion.sum(axis=1).tolist() == [10, 10, 10]
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=[0, 1, 2], zero_division=0
    )
    for i, genre in enumerate(["x", "y", "z"]):
        assert scores.per_genre[genre]["precision"] == pytest.approx(precision[i])
        assert scores.per_genre[genre]["recall"] == pytest.approx(recall[i])
        assert scores.per_genre[genre]["f1"] == pytest.approx(f1[i])
        assert scores.per_genre[genre]["support"] == support[i]
    assert scores.to_dict()["track_confusion"] == scores.track_confusion.tolist()


def test_predict_segments_is_batched_softmax_without_grad() -> None:
    torch.manual_seed(0)
    model = build_model(arch="cnn", n_classes=3)
    mel = synthetic_set(n_tracks=5, segments_per_track=1).mel
    probs = predict_segments(model, mel, device="cpu", batch_size=2)
    assert probs.shape == (5, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs, predict_segments(model, mel, batch_size=64), atol=1e-6)
    assert predict_segments(model, mel[:0]).shape == (0, 3)


def test_evaluate_model_scores_every_segment_and_track() -> None:
    data = synthetic_set(n_tracks=6, segments_per_track=3, n_genres=3)
    scores = evaluate_model(build_model(arch="cnn", n_classes=3), data, classes=["a", "b", "c"])
    assert (scores.n_segments, scores.n_tracks) == (18, 6)
    assert scores.track_confusion.shape == (3, 3) and scores.track_confusion.sum() == 6
    assert scores.segment_confusion.sum() == 18


def test_plots_are_png_files(tmp_path: Path) -> None:
    genres = ["blues", "classical", "country", "disco"]
    confusion = np.arange(16).reshape(4, 4)
    written = plot_confusion(confusion, genres, tmp_path / "confusion.png", title="test")
    assert written.read_bytes().startswith(PNG_MAGIC)
    history = [EpochStats(e, 1.0 / e, 0.5, 1.2 / e, 0.4, 1e-3, 0.1) for e in (1, 2, 3)]
    curves = plot_history(history, tmp_path / "curves.png")
    assert curves.read_bytes().startswith(PNG_MAGIC)
    assert curves.stat().st_size > 5_000  # drawn, not an empty canvas
