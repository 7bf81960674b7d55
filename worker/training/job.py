"""The training job: data → (cross-validation) → a model trained, evaluated and registered.

``run_training`` is the plain function behind ``genrectl train`` (in-process in embedded
mode) and the ``genrectl.train`` task (``train_job``, gpu queue). Splits are made on tracks
before segmentation and augmentation; augmentation touches the training part only. With
``folds=K`` it also runs K-fold cross-validation (a network and the MFCC+LR baseline per
fold) to report mean ± std; the registered model is trained on one seeded 80/10/10 split
(or the split files), which its metrics say. Every fit checkpoints each epoch under
``<data_dir>/checkpoints/<name>/``, so a run started again with the same arguments resumes.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db.engine import session_scope
from db.models import Model
from db.registry import promote
from genrectl.errors import ConfigError
from genrectl.settings import Settings
from worker.features.mel import FeatureParams
from worker.features.sets import FeatureSet
from worker.models.encoders import HEAD_ARCHS
from worker.training.data import FeatureStore, TrainingData, folder_data, library_data
from worker.training.datasets import Split, kfold, split_tracks
from worker.training.folds import fold_splits, read_fold_file
from worker.training.loop import TrainConfig
from worker.training.runs import (
    SplitRun,
    TrainReporter,
    cross_validate,
    run_fingerprint,
    train_on_split,
    write_artefacts,
)

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SUPPORTED_SEGMENT_SECONDS = (6.0,)
_SPLIT_PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class TrainSpec:
    """What to train, JSON-able for the task message.

    ``data``: labelled folders as the CLI saw them (mapped with ``settings.map_path``), or
    none with ``from_library``. ``split``: track keys of train/val/test (from split files,
    described by ``split_source``); None for a seeded 80/10/10 split. ``folds``: K for K-fold
    cross-validation as well; ``fold_file``: a CSV of folds instead (grouped by artist, see
    ``worker.training.folds``). ``segment_seconds``: 6, the reference's segments (the
    reference-table experiment also uses 30, whole GTZAN tracks). ``train_hop_seconds``:
    training tracks are cut into overlapping windows starting this often (None: the grid,
    like validation, test and the library). ``variants``: degraded copies of each fold's
    test tracks a genre head's cross-validation also scores (``worker.training.augment``).
    """

    name: str
    data: tuple[str, ...] = ()
    from_library: bool = False
    config: TrainConfig = field(default_factory=TrainConfig)
    augment: bool = False
    folds: int | None = None
    split: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None = None
    split_source: str | None = None
    segment_seconds: float = 6.0
    promote: bool = False
    train_hop_seconds: float | None = None
    fold_file: str | None = None
    variants: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        data = self.data
        object.__setattr__(self, "data", (data,) if isinstance(data, str) else tuple(data or ()))
        object.__setattr__(self, "variants", tuple(self.variants))
        if not _NAME.match(self.name):
            raise ConfigError(
                f"name={self.name!r} must be 1-128 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        if self.from_library == bool(self.data):
            raise ConfigError("give either labelled folders (data) or from_library, not both")
        if self.folds is not None and self.folds < 2:
            raise ConfigError(f"folds={self.folds} must be at least 2")
        if (self.folds is not None or self.fold_file) and self.split is not None:
            raise ConfigError("folds and split files exclude each other: a split is fixed")
        if self.folds is not None and self.fold_file:
            raise ConfigError("give folds as a number or as a fold file, not both")
        if float(self.segment_seconds) not in SUPPORTED_SEGMENT_SECONDS:
            raise ConfigError(
                f"segment_seconds={self.segment_seconds:g} is not supported yet: only 6, the "
                "reference's segments and what the library's shards hold"
            )
        hop = self.train_hop_seconds
        if hop is not None and not 0 < hop <= self.segment_seconds:
            raise ConfigError(f"train_hop_seconds={hop:g} must be in (0, {self.segment_seconds:g}]")
        if self.from_library and self.split is not None:
            raise ConfigError("split files name dataset tracks; they do not apply to the library")

    @property
    def window_hop(self) -> float | None:
        """The training windows' hop, None for the grid (a hop of one segment is the grid)."""
        hop = self.train_hop_seconds
        return None if hop is None or hop == self.segment_seconds else hop

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["split"] = [list(part) for part in self.split] if self.split else None
        data["data"], data["variants"] = list(self.data), list(self.variants)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> TrainSpec:
        """Parse a task message's spec; raises ConfigError naming what is wrong."""
        if not isinstance(data, dict):
            raise ConfigError(f"spec={data!r} must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown or "name" not in data:
            raise ConfigError(f"spec has unknown fields {unknown} or no name")
        values = dict(data)
        if not isinstance(values.get("config", {}), dict):
            raise ConfigError("spec.config must be a JSON object")
        split = values.get("split")
        if split is not None:
            if not (isinstance(split, list) and len(split) == 3):
                raise ConfigError("spec.split must be three lists of track keys")
            values["split"] = tuple(tuple(str(k) for k in part) for part in split)
        try:
            values["config"] = TrainConfig.from_dict(values.get("config", {}))
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad spec: {exc}") from None


@dataclass(frozen=True)
class TrainOutcome:
    """A registered model and what training it found."""

    model_id: int
    name: str
    path: Path
    metrics: dict[str, Any]
    training: dict[str, Any]
    artefacts: dict[str, str]
    decoded_files: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The JSON the CLI prints and the task returns."""
        return {
            "model_id": self.model_id,
            "name": self.name,
            "path": str(self.path),
            "arch": self.training.get("recipe", {}).get("arch")
            or self.training.get("config", {}).get("arch"),
            "evaluated_on": self.metrics.get("evaluated_on"),
            "track_accuracy": self.metrics.get("track_accuracy"),
            "segment_accuracy": self.metrics.get("segment_accuracy"),
            "baseline": self.metrics.get("baseline"),
            "cross_validation": self.metrics.get("cross_validation"),
            "best_epoch": self.metrics.get("best_epoch"),
            "split": self.training.get("split"),
            "data": self.training["data"],
            "artefacts": self.artefacts,
            "decoded_files": self.decoded_files,
            "seconds": round(self.seconds, 1),
        }


def device_for(settings: Settings) -> str:
    """TrainConfig's device name for the settings' device ("cuda:1" trains on "cuda")."""
    return "cuda" if settings.device.startswith("cuda") else settings.device


def model_exists(settings: Settings, name: str) -> bool:
    with session_scope(settings) as session:
        return session.scalar(select(Model.id).where(Model.name == name)) is not None


def load_data(settings: Settings, spec: TrainSpec, store: FeatureStore) -> TrainingData:
    """The spec's tracks: labelled folders (featurized into the cache) or the library."""
    if not spec.data:
        return library_data(settings)
    return folder_data(settings, [Path(settings.map_path(d)) for d in spec.data], store)


def choose_split(spec: TrainSpec, data: TrainingData) -> tuple[Split, dict[str, Any]]:
    """The split the registered model learns from, and its description."""
    if spec.split is None:
        split = split_tracks(data.keys, data.genres, seed=spec.config.seed)
        return split, {"kind": "seeded 80/10/10 by track", "seed": spec.config.seed}
    present = set(data.keys)
    parts = [sorted(k for k in part if k in present) for part in spec.split]
    for name, part, given in zip(_SPLIT_PARTS, parts, spec.split, strict=True):
        if not part:
            example = given[0] if given else "(none)"
            raise ConfigError(
                f"none of the {len(given)} {name} tracks of the split files is in the data "
                f"(e.g. {example!r}); track keys look like 'blues/blues.00001'"
            )
    missing = sum(len(given) for given in spec.split) - sum(map(len, parts))
    description = {"kind": "split files", "source": spec.split_source, "not_in_data": missing}
    return Split(*parts), description


def _metrics(
    run: SplitRun, split_info: dict[str, Any], cv: dict[str, Any] | None
) -> dict[str, Any]:
    test = run.test.to_dict()
    baseline = run.baseline
    return {
        **test,
        "evaluated_on": "the test part of the split below, by track and by 6 s segment",
        "split": split_info,
        "best_epoch": run.fit.best_epoch,
        "best_val_loss": run.fit.best_val_loss,
        "history": [asdict(s) for s in run.fit.history],
        "baseline": {
            "method": "MFCC mean+std, logistic regression",
            "track_accuracy": baseline.track_accuracy,
            "segment_accuracy": baseline.segment_accuracy,
        },
        "cross_validation": cv,
        "note": "the registered model was trained on one split (see split); "
        "cross_validation, if present, reports separate models, one per fold",
    }


def register(
    settings: Settings,
    spec: TrainSpec,
    *,
    data: TrainingData,
    path: Path,
    sha256: str,
    feature_params: dict[str, Any],
    feature_version: str,
    training: dict[str, Any],
    metrics: dict[str, Any],
) -> int:
    """Add the model to the registry (promoted if the spec says so); returns its id."""
    with session_scope(settings) as session:
        if session.scalar(select(Model.id).where(Model.name == spec.name)) is not None:
            raise ConfigError(f"a model named {spec.name!r} exists: choose another --name")
        model = Model(
            name=spec.name,
            arch=spec.config.arch,
            input_size=spec.config.input_size,
            classes=list(data.classes),
            feature_version=feature_version,
            feature_params=feature_params,
            path=str(path),
            sha256=sha256,
            training=training,
            metrics=metrics,
        )
        session.add(model)
        session.flush()
        if spec.promote:
            promote(session, model)
        return model.id


@dataclass(frozen=True)
class _Trained:
    """What ``_train`` produced, for ``_publish`` to save and register."""

    data: TrainingData
    params: FeatureSet
    config: TrainConfig
    run: SplitRun
    split_info: dict[str, Any]
    cv: dict[str, Any] | None


def _cv_splits(spec: TrainSpec, data: TrainingData, *, seed: int) -> list[Split]:
    """K stratified folds, or the folds of the fold file (with validation carved out of each
    training part); tracks the file does not name are in no fold."""
    if spec.fold_file:
        assignment = read_fold_file(Path(spec.fold_file))
        splits, _ = fold_splits(data.keys, data.genres, assignment, seed=seed)
        return splits
    assert spec.folds is not None
    return kfold(data.keys, data.genres, k=spec.folds, seed=seed)


def _job_config(settings: Settings, spec: TrainSpec) -> TrainConfig:
    """The spec's config on this host: its device, its view of the pretrained file."""
    pretrained = spec.config.pretrained
    return replace(
        spec.config,
        device=device_for(settings),
        pretrained=settings.map_path(pretrained) if pretrained else None,
    )


def _train(
    settings: Settings, spec: TrainSpec, store: FeatureStore, reporter: TrainReporter
) -> _Trained:
    config = _job_config(settings, spec)
    reporter.stage("Reading the training data")
    data = load_data(settings, spec, store)
    checkpoints = settings.data_dir / "checkpoints" / spec.name
    options: dict[str, Any] = {
        "config": config,
        "augment": spec.augment,
        "reporter": reporter,
        "hop_seconds": spec.window_hop,
    }
    cv = None
    if spec.folds or spec.fold_file:
        splits = _cv_splits(spec, data, seed=config.seed)
        cv = cross_validate(data, store, splits, checkpoints=checkpoints, **options)
        cv["fold_source"] = spec.fold_file or f"{spec.folds} folds stratified by genre"
    split, split_info = choose_split(spec, data)
    fingerprint = run_fingerprint(
        data, split, augment=spec.augment, params=store.params, hop_seconds=spec.window_hop
    )
    final = checkpoints / f"final-{fingerprint}"
    run = train_on_split(data, store, split, checkpoint_dir=final, label="model", **options)
    split_info["sizes"] = run.sizes
    return _Trained(data, store.params, config, run, split_info, cv)


def _publish(
    settings: Settings, spec: TrainSpec, trained: _Trained
) -> tuple[int, Path, dict[str, Any], dict[str, Any], dict[str, str]]:
    """Write the pictures, metrics.json and the model file; register the model. Returns
    (model id, model file, metrics, training description, artefact paths)."""
    from worker.models.modelfile import save_model

    data, run, config = trained.data, trained.run, trained.config
    metrics = _metrics(run, trained.split_info, trained.cv)
    training = {
        "data": data.description,
        "config": config.to_dict(),
        "augment": spec.augment,
        "train_hop_seconds": spec.train_hop_seconds,
        "split": trained.split_info,
        "folds": spec.folds,
        "spec": spec.to_dict(),
        "classes": list(data.classes),
    }
    directory = settings.model_dir / spec.name
    artefacts = write_artefacts(directory, run, classes=list(data.classes), cv=trained.cv)
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    artefacts["metrics"] = str(directory / "metrics.json")
    path = directory / "model.pt"
    described = {"metrics": metrics, "training": training}
    sha256 = save_model(
        path,
        model=run.fit.model,
        arch=config.arch,
        input_size=config.input_size,
        classes=list(data.classes),
        feature_params=trained.params.to_dict(),
        normalisation=run.fit.normalisation,
        **described,
    )
    model_id = register(
        settings,
        spec,
        data=data,
        path=path,
        sha256=sha256,
        feature_params=trained.params.to_dict(),
        feature_version=trained.params.version,
        **described,
    )
    return model_id, path, metrics, training, artefacts


def run_training(
    settings: Settings, spec: TrainSpec, *, reporter: TrainReporter | None = None
) -> TrainOutcome:
    """Train, evaluate, save and register the model ``spec.name`` (see the module docstring).

    Raises ConfigError for a taken name, unusable data or an impossible split.
    """
    reporter = reporter or TrainReporter()
    started = time.perf_counter()
    if model_exists(settings, spec.name):
        raise ConfigError(f"a model named {spec.name!r} exists: choose another --name")
    if spec.config.arch in HEAD_ARCHS:
        from worker.training.headjob import train_head_model

        outcome: TrainOutcome = train_head_model(settings, spec, reporter=reporter)
        return outcome
    params = FeatureParams(segment_seconds=spec.segment_seconds)
    store = FeatureStore(settings, params, progress=reporter.featurizing, warn=reporter.warn)
    trained = _train(settings, spec, store, reporter)
    model_id, path, metrics, training, artefacts = _publish(settings, spec, trained)
    # Registered: nothing is left to resume.
    shutil.rmtree(settings.data_dir / "checkpoints" / spec.name, ignore_errors=True)
    seconds = time.perf_counter() - started
    return TrainOutcome(
        model_id, spec.name, path, metrics, training, artefacts, store.cache.decoded, seconds
    )


def train_job(settings: Settings, *, spec: dict[str, Any]) -> dict[str, Any]:
    """The ``genrectl.train`` task's plain function: a spec dict in, the summary out.

    A message delivered again after its model was registered returns that model's summary
    instead of failing on the taken name.
    """
    parsed = TrainSpec.from_dict(spec)
    with session_scope(settings) as session:
        model = session.scalar(select(Model).where(Model.name == parsed.name))
        if model is not None and model.training.get("spec") == parsed.to_dict():
            return {"model_id": model.id, "name": model.name, "already_registered": True}
    return run_training(settings, parsed).summary()
