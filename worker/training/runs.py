"""The runs a training job is made of: one split trained and tested, K folds of them, and
the pictures of the results. Shared by ``genrectl train`` and the reference-table experiment.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrectl.errors import ConfigError
from worker.features.sets import FeatureSet
from worker.models.device import resolve_device
from worker.training.baseline import evaluate_baseline
from worker.training.data import FeatureStore, TrainingData, segment_set
from worker.training.datasets import SegmentSet, Split
from worker.training.evaluation import (
    Evaluation,
    evaluate_model,
    plot_confusion,
    plot_history,
    pooled_scores,
)
from worker.training.loop import EpochStats, FitResult, TrainConfig, fit

log = logging.getLogger(__name__)

_ACCURACIES = (
    "track_accuracy",
    "segment_accuracy",
    "baseline_track_accuracy",
    "baseline_segment_accuracy",
)


class TrainReporter:
    """What a training job says as it goes. This one logs; the CLI's draws progress bars."""

    def stage(self, text: str) -> None:
        log.info("%s", text)

    def warn(self, text: str) -> None:
        """Something the user should know that does not stop the job (a damaged shard)."""
        log.warning("%s", text)

    def featurizing(self, done: int, total: int) -> None:
        log.info("featurized %d/%d files", done, total)

    def starting(self, run: str, *, epochs: int, segments: int) -> None:
        log.info("%s: training %d epochs on %d segments", run, epochs, segments)

    def epoch(self, run: str, stats: EpochStats, epochs: int) -> None:
        log.info("%s: epoch %d/%d %s", run, stats.epoch, epochs, stats)


@dataclass(frozen=True)
class SplitRun:
    """A network fitted on a split's train part (choosing its epoch on val), both it and the
    MFCC+LR baseline scored on the test part, and the parts' sizes."""

    fit: FitResult
    test: Evaluation
    baseline: Evaluation
    sizes: dict[str, dict[str, int]]


def run_fingerprint(
    data: TrainingData,
    split: Split,
    *,
    augment: bool,
    params: FeatureSet,
    hop_seconds: float | None = None,
) -> str:
    """12 hex characters naming a run's inputs, so a checkpoint is only resumed by the same
    run (the checkpoint itself checks the training config)."""
    sha = {t.key: t.sha256 for t in data.tracks}
    canonical: dict[str, Any] = {
        "parts": [[(k, sha[k]) for k in part] for part in (split.train, split.val, split.test)],
        "augment": augment,
        "features": params.version,
    }
    if hop_seconds is not None:  # absent otherwise, so older checkpoints keep their names
        canonical["train_hop_seconds"] = hop_seconds
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()[:12]


def _part(
    data: TrainingData,
    keys: Sequence[str],
    store: FeatureStore,
    *,
    name: str,
    augment_seed: int | None = None,
    hop_seconds: float | None = None,
) -> tuple[SegmentSet, dict[str, int]]:
    if not keys:
        raise ConfigError(
            f"the {name} part of the split is empty: with {len(data.tracks)} tracks in "
            f"{len(data.classes)} genres, a genre has too few tracks for 10% of them to make "
            "one (10 per genre suffice for 80/10/10 and 5 folds); add tracks"
        )
    return segment_set(data, keys, store, augment_seed=augment_seed, hop_seconds=hop_seconds)


def train_on_split(
    data: TrainingData,
    store: FeatureStore,
    split: Split,
    *,
    config: TrainConfig,
    augment: bool,
    checkpoint_dir: Path,
    label: str,
    reporter: TrainReporter,
    hop_seconds: float | None = None,
) -> SplitRun:
    """Fit on ``split.train`` (plus pitch-shifted copies with ``augment``; overlapping
    windows every ``hop_seconds`` if given, else the 6 s grid), keep the epoch of lowest
    loss on ``split.val``, score network and baseline on ``split.test``. Validation, test
    and the baseline's training data are always the grid, as the library is labelled."""
    seed = config.seed if augment else None
    train, n_train = _part(
        data, split.train, store, name="train", augment_seed=seed, hop_seconds=hop_seconds
    )
    grid_train = train
    if hop_seconds is not None:
        grid_train, _ = _part(data, split.train, store, name="train", augment_seed=seed)
    val, n_val = _part(data, split.val, store, name="validation")
    test, n_test = _part(data, split.test, store, name="test")
    classes = list(data.classes)
    reporter.starting(label, epochs=config.epochs, segments=len(train))
    result = fit(
        config=config,
        train=train,
        val=val,
        classes=classes,
        checkpoint_dir=checkpoint_dir,
        progress=lambda stats: reporter.epoch(label, stats, config.epochs),
    )
    device = resolve_device(config.device)
    test_eval = evaluate_model(result.model, test, classes=classes, device=device)
    baseline = evaluate_baseline(grid_train, test, classes=classes)
    return SplitRun(result, test_eval, baseline, {"train": n_train, "val": n_val, "test": n_test})


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "std": std}


def _fold_scores(fold: int, run: SplitRun) -> dict[str, Any]:
    return {
        "fold": fold,
        "track_accuracy": run.test.track_accuracy,
        "segment_accuracy": run.test.segment_accuracy,
        "baseline_track_accuracy": run.baseline.track_accuracy,
        "baseline_segment_accuracy": run.baseline.segment_accuracy,
        "best_epoch": run.fit.best_epoch,
        "sizes": run.sizes,
    }


def cross_validate(
    data: TrainingData,
    store: FeatureStore,
    splits: Sequence[Split],
    *,
    config: TrainConfig,
    augment: bool,
    checkpoints: Path,
    reporter: TrainReporter,
    hop_seconds: float | None = None,
) -> dict[str, Any]:
    """One ``train_on_split`` per fold; per-fold and mean ± std (sample std) accuracies of
    the network and the baseline, and the confusion matrices summed over folds (every
    track is tested exactly once)."""
    per_fold: list[dict[str, Any]] = []
    answers: dict[str, dict[int, tuple[int, int]]] = {"model": {}, "baseline": {}}
    n = len(data.classes)
    track_confusion = np.zeros((n, n), dtype=np.int64)
    segment_confusion = np.zeros((n, n), dtype=np.int64)
    for i, split in enumerate(splits, start=1):
        fingerprint = run_fingerprint(
            data, split, augment=augment, params=store.params, hop_seconds=hop_seconds
        )
        run = train_on_split(
            data,
            store,
            split,
            config=config,
            augment=augment,
            checkpoint_dir=checkpoints / f"fold-{i}-{fingerprint}",
            label=f"fold {i}/{len(splits)}",
            reporter=reporter,
            hop_seconds=hop_seconds,
        )
        answers["model"].update(run.test.track_answers)
        answers["baseline"].update(run.baseline.track_answers)
        track_confusion += run.test.track_confusion
        segment_confusion += run.test.segment_confusion
        per_fold.append(_fold_scores(i, run))
    return {
        "folds": len(splits),
        "per_fold": per_fold,
        **{m: _mean_std([f[m] for f in per_fold]) for m in _ACCURACIES},
        "track_confusion": track_confusion.tolist(),
        "segment_confusion": segment_confusion.tolist(),
        "scores": {
            "model": _pooled(data, answers["model"]),
            "baseline": _pooled(data, answers["baseline"]),
        },
    }


def _pooled(data: TrainingData, answers: dict[int, tuple[int, int]]) -> dict[str, Any]:
    """Out-of-fold scores of pooled track answers, overall and per source folder."""
    tracks = sorted(answers)
    truth = np.asarray([answers[t][0] for t in tracks])
    predicted = np.asarray([answers[t][1] for t in tracks])
    sources = np.asarray([data.tracks[t].source or "data" for t in tracks])
    return pooled_scores(truth, predicted, sources, len(data.classes))


def write_artefacts(
    directory: Path, run: SplitRun, *, classes: list[str], cv: dict[str, Any] | None
) -> dict[str, str]:
    """Confusion matrices (track and segment level) and loss/accuracy curves as PNGs in
    ``directory``; returns their paths by name."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "confusion": plot_confusion(
            run.test.track_confusion,
            classes,
            directory / "confusion.png",
            title="Test tracks",
        ),
        "confusion_segments": plot_confusion(
            run.test.segment_confusion,
            classes,
            directory / "confusion-segments.png",
            title="Test segments",
        ),
        "history": plot_history(run.fit.history, directory / "history.png"),
    }
    if cv is not None:
        files["cv_confusion"] = plot_confusion(
            np.asarray(cv["track_confusion"]),
            classes,
            directory / "cv-confusion.png",
            title=f"{cv['folds']}-fold cross-validation, tracks",
        )
    return {name: str(path) for name, path in files.items()}
