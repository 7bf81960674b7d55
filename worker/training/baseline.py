"""The yardstick: MFCC statistics + logistic regression.

Each segment becomes the mean and standard deviation over time of 20 MFCCs, computed from the
same dB mel spectrogram the networks see (so it needs no audio and uses the same splits); a
standardising logistic regression classifies segments, and a track is the argmax of the mean
of its segments' probabilities, as for the networks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from genrectl.errors import ConfigError
from worker.training.datasets import SegmentSet
from worker.training.evaluation import Evaluation, score_probabilities

N_MFCC = 20


def mfcc_statistics(*, mel_db: np.ndarray, n_mfcc: int = N_MFCC) -> np.ndarray:
    """Per-segment MFCC mean and std over time.

    ``mel_db``: dB mel ``[N, n_mels, n_frames]`` → float32 ``[N, 2 * n_mfcc]`` (means first).
    """
    import librosa  # deferred: importing librosa costs about a second

    if mel_db.ndim != 3:
        raise ConfigError(f"mel_db has shape {mel_db.shape}; expected [N, n_mels, n_frames]")
    if len(mel_db) == 0:
        return np.zeros((0, 2 * n_mfcc), dtype=np.float32)
    mfcc = librosa.feature.mfcc(S=np.asarray(mel_db, dtype=np.float32), n_mfcc=n_mfcc)
    return np.concatenate([mfcc.mean(axis=2), mfcc.std(axis=2)], axis=1).astype(np.float32)


def fit_baseline(
    features: np.ndarray, labels: np.ndarray, *, c: float = 1.0, max_iter: int = 5000
) -> Pipeline:
    """Fit StandardScaler + multinomial LogisticRegression on ``features`` ``[N, F]`` and int
    ``labels`` ``[N]``. Deterministic (the lbfgs solver uses no randomness)."""
    if len(features) != len(labels):
        raise ConfigError(f"{len(features)} feature rows but {len(labels)} labels")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    model.fit(features, labels)
    return model


def baseline_probabilities(model: Pipeline, features: np.ndarray, *, n_classes: int) -> np.ndarray:
    """Class probabilities ``[N, n_classes]``, with zero columns for classes absent in training."""
    probs = np.zeros((len(features), n_classes), dtype=np.float32)
    if len(features):
        probs[:, model.classes_] = model.predict_proba(features)
    return probs


def evaluate_baseline(
    train: SegmentSet, test: SegmentSet, *, classes: Sequence[str], c: float = 1.0
) -> Evaluation:
    """Fit the baseline on ``train``'s segments and score it on ``test`` (segment and track
    level, per genre), exactly as the networks are scored."""
    model = fit_baseline(mfcc_statistics(mel_db=train.mel), train.labels, c=c)
    probs = baseline_probabilities(model, mfcc_statistics(mel_db=test.mel), n_classes=len(classes))
    return score_probabilities(probs, test, classes=classes)
