"""The reference's results table, reproduced; and a registered model scored on a folder.

The reference report trained two networks on GTZAN three ways. We read its three columns as
(1) whole 30 s tracks, one input per track; (2) the same plus one pitch-shifted copy of
each training track; (3) 6 s segments, five per track, a track's answer being its segments'
mean probability. A whole track is featurized as one 30 s "segment": a mel of 90 x 647
frames (a shorter track is zero-padded to 30 s), which DenseNet sees resized to 224 x 224
like everything else it sees; the CNN sees it at native size.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from db.engine import session_scope
from db.registry import find_model
from genrectl.errors import ConfigError
from genrectl.settings import Settings
from worker.features.mel import FeatureParams
from worker.features.sets import model_feature_sets
from worker.inference.label import cached_model
from worker.inference.predict import score_tracks
from worker.models.device import resolve_device
from worker.models.heads import GenreHead
from worker.training.data import FeatureStore, TrainingData, folder_data, folder_tracks, segment_set
from worker.training.datasets import kfold, split_tracks
from worker.training.evaluation import evaluate_model, plot_confusion, track_evaluation
from worker.training.job import device_for
from worker.training.loop import TrainConfig
from worker.training.runs import TrainReporter, cross_validate, run_fingerprint, train_on_split

log = logging.getLogger(__name__)

WHOLE_TRACK_SECONDS = 30.0
# The reference's test accuracies, %.
REFERENCE_ACCURACY: dict[tuple[str, str], float] = {
    ("cnn", "tracks"): 65.0,
    ("cnn", "augmented"): 57.0,
    ("cnn", "segments"): 65.8,
    ("densenet121", "tracks"): 68.0,
    ("densenet121", "augmented"): 74.0,
    ("densenet121", "segments"): 77.8,
}
VARIANTS: dict[str, tuple[float, bool, str]] = {  # segment seconds, augment, description
    "tracks": (WHOLE_TRACK_SECONDS, False, "30 s tracks"),
    "augmented": (WHOLE_TRACK_SECONDS, True, "30 s tracks + pitch shift"),
    "segments": (6.0, False, "6 s segments"),
}
INPUT_SIZE = {"cnn": "native", "densenet121": "224"}


@dataclass(frozen=True)
class ReferenceConfig:
    """One cell of the reference's table: a network and a way of feeding it."""

    arch: str
    variant: str

    @property
    def name(self) -> str:
        return f"{self.arch}-{self.variant}"

    @property
    def segment_seconds(self) -> float:
        return VARIANTS[self.variant][0]

    @property
    def augment(self) -> bool:
        return VARIANTS[self.variant][1]


def reference_configs(archs: Sequence[str] = ("cnn", "densenet121")) -> list[ReferenceConfig]:
    """The reference's configurations for the given networks, in its table's order."""
    unknown = sorted(set(archs) - set(INPUT_SIZE))
    if unknown or not archs:
        raise ConfigError(f"arch {unknown or archs} must be among {', '.join(INPUT_SIZE)}")
    return [ReferenceConfig(a, v) for a in INPUT_SIZE if a in archs for v in VARIANTS]


@dataclass(frozen=True)
class ExperimentOptions:
    """How to train each configuration. ``folds``: K-fold cross-validation instead of one
    seeded 80/10/10 split. ``pretrained``: local ImageNet DenseNet-121 weights."""

    epochs: int = 30
    batch_size: int = 32
    seed: int = 0
    folds: int | None = None
    archs: tuple[str, ...] = ("cnn", "densenet121")
    pretrained: str | None = None


def _config(settings: Settings, cfg: ReferenceConfig, options: ExperimentOptions) -> TrainConfig:
    return TrainConfig(
        arch=cfg.arch,
        input_size=INPUT_SIZE[cfg.arch],
        epochs=options.epochs,
        batch_size=options.batch_size,
        seed=options.seed,
        device=device_for(settings),
        pretrained=options.pretrained if cfg.arch == "densenet121" else None,
    )


def _score(
    data: TrainingData,
    store: FeatureStore,
    cfg: ReferenceConfig,
    config: TrainConfig,
    options: ExperimentOptions,
    *,
    checkpoints: Path,
    reporter: TrainReporter,
) -> tuple[dict[str, Any], np.ndarray]:
    """Accuracies (mean and std over folds, or one split's) and the track confusion."""
    if options.folds:
        splits = kfold(data.keys, data.genres, k=options.folds, seed=options.seed)
        cv = cross_validate(
            data,
            store,
            splits,
            config=config,
            augment=cfg.augment,
            checkpoints=checkpoints,
            reporter=reporter,
        )
        scores = {m: cv[m] for m in ("track_accuracy", "segment_accuracy")}
        scores["baseline_track_accuracy"] = cv["baseline_track_accuracy"]
        return scores, np.asarray(cv["track_confusion"])
    split = split_tracks(data.keys, data.genres, seed=options.seed)
    fingerprint = run_fingerprint(data, split, augment=cfg.augment, params=store.params)
    run = train_on_split(
        data,
        store,
        split,
        config=config,
        augment=cfg.augment,
        checkpoint_dir=checkpoints / f"split-{fingerprint}",
        label=cfg.name,
        reporter=reporter,
    )
    scores = {
        "track_accuracy": {"mean": run.test.track_accuracy, "std": None},
        "segment_accuracy": {"mean": run.test.segment_accuracy, "std": None},
        "baseline_track_accuracy": {"mean": run.baseline.track_accuracy, "std": None},
        "best_epoch": run.fit.best_epoch,
        "sizes": run.sizes,
    }
    return scores, run.test.track_confusion


def _reference_row(
    settings: Settings,
    cfg: ReferenceConfig,
    prepared: tuple[TrainingData, FeatureStore],
    options: ExperimentOptions,
    *,
    output_dir: Path,
    reporter: TrainReporter,
) -> dict[str, Any]:
    """Train and score one configuration; its confusion matrix goes to ``output_dir``."""
    data, store = prepared
    checkpoints = settings.data_dir / "checkpoints" / "reference-table" / cfg.name
    config = _config(settings, cfg, options)
    began = time.perf_counter()
    scores, confusion = _score(
        data, store, cfg, config, options, checkpoints=checkpoints, reporter=reporter
    )
    shutil.rmtree(checkpoints, ignore_errors=True)
    picture = plot_confusion(
        confusion,
        list(data.classes),
        output_dir / f"{cfg.name}-confusion.png",
        title=f"{cfg.arch}, {VARIANTS[cfg.variant][2]} (tracks)",
    )
    return {
        "arch": cfg.arch,
        "variant": cfg.variant,
        "inputs": VARIANTS[cfg.variant][2],
        "input_size": config.input_size,
        **scores,
        "reference_accuracy": REFERENCE_ACCURACY[(cfg.arch, cfg.variant)] / 100,
        "confusion_png": str(picture),
        "seconds": round(time.perf_counter() - began, 1),
    }


def run_reference_table(
    settings: Settings,
    *,
    root: Path,
    options: ExperimentOptions,
    output_dir: Path,
    reporter: TrainReporter | None = None,
) -> dict[str, Any]:
    """Train and test every reference configuration on the labelled folder ``root``; write
    each confusion matrix PNG and ``table.json`` to ``output_dir``; return the table."""
    reporter = reporter or TrainReporter()
    started = time.perf_counter()
    output_dir.mkdir(parents=True, exist_ok=True)
    prepared: dict[float, tuple[TrainingData, FeatureStore]] = {}
    rows = []
    for cfg in reference_configs(options.archs):
        if cfg.segment_seconds not in prepared:
            params = FeatureParams(segment_seconds=cfg.segment_seconds)
            store = FeatureStore(settings, params, progress=reporter.featurizing)
            reporter.stage(f"Featurizing {root} ({cfg.segment_seconds:g} s inputs)")
            prepared[cfg.segment_seconds] = (folder_data(settings, root, store), store)
        rows.append(
            _reference_row(
                settings,
                cfg,
                prepared[cfg.segment_seconds],
                options,
                output_dir=output_dir,
                reporter=reporter,
            )
        )
    evaluation = f"one seeded 80/10/10 split by track (seed {options.seed})"
    if options.folds:
        evaluation = f"{options.folds}-fold cross-validation (mean ± sample std)"
    table = {
        "data": str(root),
        "tracks": {str(k): len(d.tracks) for k, (d, _) in prepared.items()},
        "options": asdict(options),
        "evaluation": evaluation,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (output_dir / "table.json").write_text(json.dumps(table, indent=2))
    return table


def evaluate_folder(
    settings: Settings, *, model_name: str, root: Path, output_dir: Path
) -> dict[str, Any]:
    """Score a registered model on every track of a labelled folder (all of them are test
    data); genres the model does not know are skipped and counted. Writes the track-level
    confusion matrix to ``output_dir/confusion.png``."""
    with session_scope(settings) as session:
        model = find_model(session, model_name)
        path, sha, name = model.path, model.sha256, model.name
    loaded = cached_model(path, sha)
    stores = [FeatureStore(settings, s) for s in model_feature_sets(loaded.feature_params)]
    store = stores[0]
    tracks, description = folder_tracks(settings, root, store)
    known = [t for t in tracks if t.genre in loaded.classes]
    skipped = sorted({t.genre for t in tracks} - set(loaded.classes))
    if not known:
        raise ConfigError(
            f"no track of '{root}' has a genre model {name!r} knows ({', '.join(loaded.classes)})"
        )
    data = TrainingData(tuple(known), tuple(loaded.classes), description)
    if isinstance(loaded.model, GenreHead):
        from worker.training.headjob import track_rows

        scores = score_tracks(loaded.model, [track_rows(s, data) for s in stores])
        result = track_evaluation(scores, data, classes=loaded.classes)
    else:
        test, _ = segment_set(data, data.keys, store)
        device = resolve_device(device_for(settings))
        result = evaluate_model(loaded.model, test, classes=loaded.classes, device=device)
    output_dir.mkdir(parents=True, exist_ok=True)
    picture = plot_confusion(
        result.track_confusion,
        loaded.classes,
        output_dir / "confusion.png",
        title=f"{name} on {root.name} (tracks)",
    )
    return {
        "model": name,
        "data": str(root),
        **result.to_dict(),
        "skipped_genres": {g: sum(t.genre == g for t in tracks) for g in skipped},
        "unusable": description["unusable"],
        "confusion_png": str(picture),
        "decoded_files": sum(s.cache.decoded for s in stores),
    }
