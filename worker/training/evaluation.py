"""How good a model is: segment and track accuracy, per-genre scores, confusion matrices and
the plots of them.

A track's prediction is the argmax of the mean of its segments' softmax probabilities (the
ensemble over segments the reference wished it had used).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from genrectl.errors import ConfigError
from worker.inference.predict import predict_segments, track_probabilities
from worker.training.datasets import SegmentSet

if TYPE_CHECKING:
    from worker.training.data import TrainingData
from worker.training.loop import EpochStats


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, *, n_classes: int) -> np.ndarray:
    """Counts ``[n_classes, n_classes]`` int64: rows are true classes, columns predicted."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def genre_scores(confusion: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per genre from a confusion matrix (0 where undefined)."""
    tp = np.diag(confusion).astype(np.float64)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, denominator, out=np.zeros_like(tp), where=denominator > 0
    )
    return {
        genre: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(actual[i]),
        }
        for i, genre in enumerate(classes)
    }


@dataclass(frozen=True)
class Evaluation:
    """Scores of one model on one set. Confusion matrices: rows true, columns predicted;
    ``per_genre`` is at track level (what a user sees)."""

    classes: list[str]
    segment_accuracy: float
    track_accuracy: float
    segment_confusion: np.ndarray
    track_confusion: np.ndarray
    per_genre: dict[str, dict[str, float]]
    n_segments: int
    n_tracks: int
    # track id -> (true class, predicted class): lets folds be pooled per track.
    track_answers: dict[int, tuple[int, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able numbers, e.g. for a model file's metrics."""
        data = asdict(self)
        data.pop("track_answers")
        if math.isnan(self.segment_accuracy):  # a model that reads whole tracks
            data["segment_accuracy"] = None
        data["segment_confusion"] = self.segment_confusion.tolist()
        data["track_confusion"] = self.track_confusion.tolist()
        return data


def macro_recall(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Mean over the genres present in ``truth`` of the share of their tracks predicted."""
    present = [c for c in range(n_classes) if (truth == c).any()]
    recalls = [float((predicted[truth == c] == c).mean()) for c in present]
    return float(np.mean(recalls)) if recalls else 0.0


def pooled_scores(
    truth: np.ndarray, predicted: np.ndarray, sources: np.ndarray, n_classes: int
) -> dict[str, Any]:
    """Accuracy and per-genre mean recall of pooled (e.g. out-of-fold) track answers, overall
    and per source folder (``sources``: one name per track)."""
    out: dict[str, Any] = {
        "tracks": len(truth),
        "accuracy": float((truth == predicted).mean()) if len(truth) else 0.0,
        "macro_recall": macro_recall(truth, predicted, n_classes),
        "by_source": {},
    }
    for source in sorted(set(sources.tolist())):
        mask = sources == source
        out["by_source"][source] = {
            "tracks": int(mask.sum()),
            "accuracy": float((truth[mask] == predicted[mask]).mean()),
            "macro_recall": macro_recall(truth[mask], predicted[mask], n_classes),
        }
    return out


def confidence_scores(
    truth: np.ndarray, probs: np.ndarray, sources: np.ndarray, *, threshold: float
) -> dict[str, Any]:
    """How far pooled (out-of-fold) answers can be trusted, per source folder: the mean
    confidence beside the accuracy (equal when the confidence is calibrated), and at
    ``threshold`` the share called "unclear genre" and the accuracy of the rest.
    ``probs`` ``[N, C]`` are probabilities."""
    out: dict[str, Any] = {"threshold": threshold, "by_source": {}}
    confidence, right = probs.max(axis=1), probs.argmax(axis=1) == truth
    for source in sorted(set(sources.tolist())):
        mask = sources == source
        kept = mask & (confidence >= threshold)
        out["by_source"][source] = {
            "mean_confidence": round(float(confidence[mask].mean()), 4),
            "accuracy": round(float(right[mask].mean()), 4),
            "unclear": round(float(1 - kept.sum() / mask.sum()), 4),
            "accuracy_of_the_rest": round(float(right[kept].mean()), 4) if kept.any() else None,
        }
    return out


def track_labels(labels: np.ndarray, track_ids: np.ndarray) -> dict[int, int]:
    """``{track_id: label}``; raises if a track's segments disagree on their label."""
    label_of: dict[int, int] = {}
    for track, label in zip(track_ids.tolist(), labels.tolist(), strict=True):
        if label_of.setdefault(track, label) != label:
            raise ConfigError(f"track {track} has segments labelled {label_of[track]} and {label}")
    return label_of


def score_probabilities(
    probs: np.ndarray, data: SegmentSet, *, classes: Sequence[str]
) -> Evaluation:
    """Score precomputed segment probabilities ``[N, C]`` against ``data``'s labels."""
    n = len(classes)
    segment_pred = probs.argmax(axis=1)
    per_track = track_probabilities(probs, data.track_ids)
    truth = track_labels(data.labels, data.track_ids)
    track_true = np.array([truth[t] for t in per_track], dtype=np.int64)
    track_pred = np.array([p.argmax() for p in per_track.values()], dtype=np.int64)
    track_confusion = confusion_matrix(track_true, track_pred, n_classes=n)
    return Evaluation(
        classes=list(classes),
        segment_accuracy=float((segment_pred == data.labels).mean()) if len(data) else 0.0,
        track_accuracy=float((track_pred == track_true).mean()) if per_track else 0.0,
        segment_confusion=confusion_matrix(data.labels, segment_pred, n_classes=n),
        track_confusion=track_confusion,
        per_genre=genre_scores(track_confusion, classes),
        n_segments=len(data),
        n_tracks=len(per_track),
        track_answers={
            t: (int(true), int(pred))
            for t, true, pred in zip(per_track, track_true, track_pred, strict=True)
        },
    )


def track_evaluation(
    scores: dict[int, np.ndarray], data: TrainingData, *, classes: Sequence[str]
) -> Evaluation:
    """Score per-track class probabilities (``{track index: [C]}``, a model that reads
    whole tracks) against ``data``'s genres; the segment fields stay empty."""
    label_of = {c: i for i, c in enumerate(classes)}
    tracks = sorted(scores)
    truth = np.asarray([label_of[data.tracks[t].genre] for t in tracks], dtype=np.int64)
    predicted = np.asarray([int(np.argmax(scores[t])) for t in tracks], dtype=np.int64)
    confusion = confusion_matrix(truth, predicted, n_classes=len(classes))
    empty = np.zeros((len(classes), len(classes)), dtype=np.int64)
    return Evaluation(
        classes=list(classes),
        segment_accuracy=float("nan"),
        track_accuracy=float((truth == predicted).mean()) if tracks else 0.0,
        segment_confusion=empty,
        track_confusion=confusion,
        per_genre=genre_scores(confusion, classes),
        n_segments=0,
        n_tracks=len(tracks),
        track_answers={
            t: (int(a), int(b)) for t, a, b in zip(tracks, truth, predicted, strict=True)
        },
    )


def evaluate_model(
    model: nn.Module,
    data: SegmentSet,
    *,
    classes: Sequence[str],
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> Evaluation:
    """Segment- and track-level scores of ``model`` on ``data`` (labels index ``classes``)."""
    probs = predict_segments(model, data.mel, device=device, batch_size=batch_size)
    return score_probabilities(probs, data, classes=classes)


def plot_confusion(
    confusion: np.ndarray, classes: Sequence[str], path: Path, *, title: str = "Confusion matrix"
) -> Path:
    """Write ``confusion`` (rows true, columns predicted) as a PNG heat map with genre names on
    both axes and the count in each cell. Returns ``path``."""
    from matplotlib.figure import Figure  # deferred and pyplot-free: no GUI backend, no globals

    size = 1.0 + 0.6 * len(classes)
    fig = Figure(figsize=(size + 1.5, size), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(confusion, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = confusion.max() / 2 if confusion.size else 0
    for (row, col), count in np.ndenumerate(confusion):
        colour = "white" if count > threshold else "black"
        ax.text(col, row, str(count), ha="center", va="center", color=colour, fontsize=8)
    fig.savefig(path, format="png", dpi=100)
    return path


def plot_history(history: Sequence[EpochStats], path: Path) -> Path:
    """Write loss and accuracy curves (train and validation per epoch) as a PNG."""
    from matplotlib.figure import Figure

    epochs = [s.epoch for s in history]
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [s.train_loss for s in history], label="train")
    loss_ax.plot(epochs, [s.val_loss for s in history], label="validation")
    acc_ax.plot(epochs, [s.train_acc for s in history], label="train")
    acc_ax.plot(epochs, [s.val_acc for s in history], label="validation")
    for ax, name in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.savefig(path, format="png", dpi=100)
    return path
