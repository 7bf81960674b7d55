"""The training job for genre heads on the pretrained encoders (``--arch encoder-head`` and
``mn04-zeroshot``): encoder features of every track → out-of-fold scores → a head fit on
all the data → registered.

Unlike the CNN job there is no held-out test split for the registered model: it learns from
every track, and how well its recipe does on music it never heard is what cross-validation
says (with a fold file grouped by artist: on artists it never heard). The zero-shot model
and the MFCC baseline are scored on the same folds, side by side.

The recipe, by arch (measured out of fold on GTZAN, README "Models and accuracy"):

- ``encoder-head``: experts mn04 (AudioSet genre classes, 10 s windows) and msd_fcn
  (Last.fm genre tags, one 29 s window), their prior calibrated, blended with a logistic
  regression on msd_fcn's 64-d embedding;
- ``mn04-zeroshot``: mn04's genre classes as they are; nothing is trained.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrectl.errors import ConfigError
from genrectl.settings import Settings
from worker.features.encoder import LEVEL, mn04_features, msd_fcn_features
from worker.features.mel import FeatureParams
from worker.features.sets import FeatureSet
from worker.inference.predict import Rows, head_features, track_probabilities
from worker.models.encoders import class_names
from worker.models.heads import GenreHead
from worker.models.zeroshot import load_zeroshot_map, prior_indices
from worker.training.baseline import baseline_probabilities, fit_baseline, mfcc_statistics
from worker.training.data import FeatureStore, TrainingData, TrainingTrack, segment_set
from worker.training.datasets import kfold
from worker.training.evaluation import (
    confidence_scores,
    confusion_matrix,
    genre_scores,
    plot_confusion,
    pooled_scores,
)
from worker.training.folds import read_fold_file
from worker.training.heads import (
    Fitted,
    TrackTable,
    choose_and_fit,
    inner_folds,
    softmax,
)
from worker.training.runs import TrainReporter
from worker.training.thresholds import coverage_scores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Design:
    """What an arch reads: its feature sets, its experts (feature set position and encoder)
    and its trained part's inputs (feature set position, array, size)."""

    sets: list[FeatureSet]
    experts: list[tuple[int, str]]
    inputs: list[tuple[int, str, int]]


def design(arch: str) -> Design:
    if arch == "mn04-zeroshot":
        return Design([mn04_features()], [(0, "mn04")], [])
    if arch == "encoder-head":
        return Design(
            [mn04_features(), msd_fcn_features()],
            [(0, "mn04"), (1, "msd_fcn")],
            [(1, "emb64", 64)],
        )
    raise ConfigError(f"arch={arch!r} is not a genre head")


def empty_head(arch: str, classes: tuple[str, ...], home: Path) -> GenreHead:
    """The arch's head for ``classes`` with its zero-shot maps set and nothing fitted: the
    zero-shot model itself for ``mn04-zeroshot``. Raises ConfigError when a genre has no
    encoder class in any map (the prior knows nothing of it)."""
    plan = design(arch)
    maps = load_zeroshot_map(home)
    indices = [
        prior_indices(classes, maps.get(encoder) or {}, class_names(encoder))
        for _, encoder in plan.experts
    ]
    unmapped = [g for i, g in enumerate(classes) if not any(ix[i] for ix in indices)]
    if unmapped and (arch == "mn04-zeroshot" or len(unmapped) == len(classes)):
        raise ConfigError(
            f"genres {unmapped} have no classes in the zero-shot map: add them to "
            "zeroshot-map.json in GENRECTL_HOME (`genrectl models classes` lists the names)"
        )
    head = GenreHead(
        arch=arch,
        n_classes=len(classes),
        experts=[(s, len(class_names(e))) for s, e in plan.experts],
        inputs=plan.inputs,
        head_weight=1.0 if plan.inputs else 0.0,
        prior_weight=1.0,
    )
    for k, ix in enumerate(indices):
        head.set_prior(k, ix)
    if len(plan.experts) > 1:  # uncalibrated: every expert heard equally until training
        head.scales.fill_(1.0)
    return head


@dataclass(frozen=True)
class HeadData:
    """Every track's rows per feature set (``owner``: index into ``data.tracks``) and the
    per-track table the head is fitted on."""

    data: TrainingData
    rows: list[Rows]
    table: TrackTable


def track_rows(store: FeatureStore, data: TrainingData, variant: str = "") -> Rows:
    """The rows of every track of ``data`` (``owner``: its index), from the store (featurized
    into the training cache first where needed), degraded as ``variant`` says."""
    wanted = [(t, 0) for t in data.tracks]
    failed = store.prepare(wanted, variant=variant)
    if failed:
        key, reason = next(iter(failed.items()))
        raise ConfigError(f"{len(failed)} tracks gave no encoder features, e.g. {key}: {reason}")
    found = store.arrays(wanted, variant=variant)
    return Rows.concatenate(
        [
            Rows({k: np.asarray(v, np.float32) for k, v in a.items()}, np.full(len(a[LEVEL]), i))
            for i, a in enumerate(found)
            if a is not None
        ]
    )


def head_data(
    settings: Settings,
    arch: str,
    data: TrainingData,
    stores: list[FeatureStore],
    groups: dict[str, str] | None,
    *,
    variant: str = "",
) -> HeadData:
    """Every track's encoder rows, and the per-track table (of the tracks as recorded, or of
    their copies degraded as ``variant`` says)."""
    rows = [track_rows(store, data, variant) for store in stores]
    head = empty_head(arch, data.classes, settings.home)
    features = head_features(head, rows, np.arange(len(data.tracks)))
    with torch.no_grad():
        z = head.expert_logits(features).numpy() if head.experts else None
        x = head.standardised(features).numpy() if head.inputs else None  # raw: mean 0, std 1
    label_of = {g: i for i, g in enumerate(data.classes)}
    table = TrackTable(
        z=z,
        x=x,
        labels=np.asarray([label_of[t.genre] for t in data.tracks], dtype=np.int64),
        groups=[_group(t, groups) for t in data.tracks],
        sources=[t.source or "data" for t in data.tracks],
        n_classes=len(data.classes),
    )
    return HeadData(data, rows, table)


def _group(track: TrainingTrack, groups: dict[str, str] | None) -> str:
    """Inner folds keep an artist together: the fold file's, else the file's artist tag."""
    if groups and track.key in groups:
        return groups[track.key]
    return f"artist:{track.artist.casefold()}" if track.artist else f"track:{track.key}"


def to_head(arch: str, hd: HeadData, fitted: Fitted, home: Path) -> GenreHead:
    """The GenreHead holding ``fitted`` (its calibration, trained part and blend)."""
    head = empty_head(arch, hd.data.classes, home)
    if fitted.scales is not None and fitted.bias is not None:
        head.set_calibration(
            scales=torch.from_numpy(fitted.scales).float(),
            bias=torch.from_numpy(fitted.bias).float(),
        )
    if fitted.linear is not None:
        with torch.no_grad():
            head.linear.weight.copy_(torch.from_numpy(fitted.linear.weight))
            head.linear.bias.copy_(torch.from_numpy(fitted.linear.bias))
        head.set_standardisation(
            mean=torch.from_numpy(fitted.linear.mean).float(),
            std=torch.from_numpy(fitted.linear.std).float(),
        )
    # The temperature divides the whole blend: both weights carry it.
    head.head_weight = 1.0 / fitted.temperature if fitted.linear is not None else 0.0
    uses_prior = fitted.scales is not None or arch == "mn04-zeroshot"
    head.prior_weight = fitted.w / fitted.temperature if uses_prior else 0.0
    return head.eval()


def fit_tracks(
    arch: str, hd: HeadData, tracks: np.ndarray, *, folds_of: dict[int, int] | None, seed: int
) -> Fitted:
    """The arch's head fitted on ``tracks`` (its numbers chosen by inner CV on them)."""
    if arch == "mn04-zeroshot":
        return Fitted(None, None, None, 1.0, chosen={"kind": 0.0})
    inner = inner_folds(hd.table, tracks, folds_of=folds_of, k=4, seed=seed)
    return choose_and_fit(hd.table, tracks, inner=inner)


@dataclass(frozen=True)
class FoldPlan:
    """Test tracks (indices into the data) of each fold, where they came from, the fold of
    each tracked named (for inner CV), and how many tracks no fold tests."""

    tests: list[np.ndarray]
    source: str
    folds_of: dict[int, int] | None
    untested: int


def fold_plan(
    folds: int | None, fold_file: str | None, data: TrainingData, seed: int
) -> FoldPlan | None:
    index = data.by_key()
    if fold_file:
        assignment = read_fold_file(Path(fold_file))
        named = {index[k]: f for k, f in assignment.fold_of.items() if k in index}
        if not named:
            raise ConfigError(f"the fold file {fold_file} names none of the {len(index)} tracks")
        tests = [
            np.asarray(sorted(t for t, f in named.items() if f == fold), dtype=np.int64)
            for fold in sorted(set(named.values()))
        ]
        return FoldPlan(tests, f"fold file {fold_file}", named, len(index) - len(named))
    if folds:
        splits = kfold(data.keys, data.genres, k=folds, seed=seed)
        tests = [np.asarray(sorted(index[k] for k in s.test), dtype=np.int64) for s in splits]
        return FoldPlan(tests, f"{folds} folds stratified by genre (seed {seed})", None, 0)
    return None


def _baseline(
    settings: Settings, data: TrainingData, plan: FoldPlan, reporter: TrainReporter
) -> dict[int, np.ndarray]:
    """Out-of-fold track probabilities of the MFCC + logistic regression baseline, fitted on
    the reference mel's 6 s segments of the same training tracks."""
    store = FeatureStore(
        settings, FeatureParams(), progress=reporter.featurizing, warn=reporter.warn
    )
    store.prepare([(t, 0) for t in data.tracks])
    out: dict[int, np.ndarray] = {}
    everything = np.concatenate(plan.tests)
    for test in plan.tests:
        train = np.setdiff1d(everything, test)
        train_set, _ = segment_set(data, [data.tracks[i].key for i in train], store)
        test_set, _ = segment_set(data, [data.tracks[i].key for i in test], store)
        model = fit_baseline(mfcc_statistics(mel_db=train_set.mel), train_set.labels)
        probs = baseline_probabilities(
            model, mfcc_statistics(mel_db=test_set.mel), n_classes=len(data.classes)
        )
        out.update(track_probabilities(probs, test_set.track_ids))
    return out


@dataclass(frozen=True)
class OutOfFold:
    """Per track (index into the data), its out-of-fold scores by recipe (``model``,
    ``zeroshot``, ``baseline``, ``model on <variant>``), the per-class thresholds its fold's
    head chose (inner out of fold; absent for heads without inner CV), and each fold's
    choices."""

    scores: dict[str, dict[int, np.ndarray]]
    thresholds: dict[int, np.ndarray]
    choices: list[dict[str, Any]]
    folds: list[tuple[np.ndarray, Fitted]] = field(default_factory=list)  # (test, its head)


def outer_oof(
    settings: Settings,
    arch: str,
    hd: HeadData,
    plan: FoldPlan,
    *,
    seed: int,
    reporter: TrainReporter,
    degraded: dict[str, HeadData] | None = None,
) -> OutOfFold:
    """Out-of-fold scores of the arch's recipe, of the zero-shot model and of the MFCC
    baseline on the same folds; the recipe's on the ``degraded`` copies of each fold's test
    tracks (the head fitted on the originals)."""
    degraded = degraded or {}
    oof: dict[str, dict[int, np.ndarray]] = {"model": {}, "zeroshot": {}}
    oof.update({f"model on {v}": {} for v in degraded})
    thresholds: dict[int, np.ndarray] = {}
    choices, folds = [], []
    everything = np.concatenate(plan.tests)
    zeroshot = (
        empty_head("mn04-zeroshot", hd.data.classes, settings.home)
        if arch != "mn04-zeroshot"
        else None
    )
    for number, test in enumerate(plan.tests, start=1):
        reporter.stage(f"Fold {number}/{len(plan.tests)}: {len(test)} test tracks")
        train = np.setdiff1d(everything, test)
        fitted = fit_tracks(arch, hd, train, folds_of=plan.folds_of, seed=seed + number)
        choices.append({"fold": number, **fitted.chosen})
        folds.append((test, fitted))
        if fitted.thresholds is not None:
            thresholds.update((int(t), fitted.thresholds) for t in test)
        if arch == "mn04-zeroshot":
            scores = _zeroshot_scores(empty_head(arch, hd.data.classes, settings.home), hd, test)
        else:
            scores = fitted.log_probs(hd.table, test)
            for variant, copies in degraded.items():
                found = fitted.log_probs(copies.table, test)
                oof[f"model on {variant}"].update(zip(test.tolist(), found, strict=True))
        oof["model"].update(zip(test.tolist(), scores, strict=True))
    oof["zeroshot"] = (
        dict(zip(everything.tolist(), _zeroshot_scores(zeroshot, hd, everything), strict=True))
        if zeroshot
        else dict(oof["model"])
    )
    reporter.stage("The MFCC baseline on the same folds")
    oof["baseline"] = _baseline(settings, hd.data, plan, reporter)
    return OutOfFold(oof, thresholds, choices, folds)


def cross_validate_head(
    settings: Settings,
    arch: str,
    hd: HeadData,
    plan: FoldPlan,
    *,
    seed: int,
    reporter: TrainReporter,
    degraded: dict[str, HeadData] | None = None,
) -> dict[str, Any]:
    """Out-of-fold scores of the arch's recipe, of the zero-shot model and of the MFCC
    baseline on the same folds, overall and per source folder; the recipe's scores on the
    ``degraded`` copies of each fold's test tracks; per-genre scores and the confusion
    matrix of the recipe; its coverage and the accuracy of the labels it keeps at the global
    threshold and at each fold's per-class thresholds; what inner cross-validation chose in
    each fold."""
    n = hd.table.n_classes
    found = outer_oof(settings, arch, hd, plan, seed=seed, reporter=reporter, degraded=degraded)
    oof = found.scores
    tested = np.asarray(sorted(oof["model"]), dtype=np.int64)
    truth = hd.table.labels[tested]
    sources = np.asarray([hd.table.sources[i] for i in tested])
    results = {
        name: pooled_scores(
            truth, np.asarray([int(np.argmax(table[i])) for i in tested]), sources, n
        )
        for name, table in oof.items()
    }
    predicted = np.asarray([int(np.argmax(oof["model"][i])) for i in tested])
    confusion = confusion_matrix(truth, predicted, n_classes=n)
    probs = softmax(np.stack([oof["model"][i] for i in tested]))
    out = {
        "folds": len(plan.tests),
        "fold_source": plan.source,
        "untested_tracks": plan.untested,
        "scores": results,
        "per_genre": genre_scores(confusion, list(hd.data.classes)),
        "track_confusion": confusion.tolist(),
        "confidence": confidence_scores(
            truth, probs, sources, threshold=settings.unknown_threshold
        ),
        "choices": found.choices,
    }
    if len(found.thresholds) == len(tested):
        per_track = np.stack([found.thresholds[int(i)] for i in tested])
        out["class_thresholds"] = {
            "rule": "per class, the F1-maximising threshold on inner out-of-fold answers",
            "global": coverage_scores(truth, probs, sources, settings.unknown_threshold),
            "per_class": coverage_scores(truth, probs, sources, per_track),
        }
    return out


def _zeroshot_scores(head: GenreHead, hd: HeadData, tracks: np.ndarray) -> np.ndarray:
    rows = [hd.rows[0]]  # mn04 is every design's first feature set
    with torch.no_grad():
        return head(head_features(head, rows, tracks)).numpy()


def _metrics(cv: dict[str, Any] | None, chosen: dict[str, Any]) -> dict[str, Any]:
    """The registry's metrics of a head: its recipe's out-of-fold scores, when
    cross-validated."""
    if cv is None:
        return {
            "evaluated_on": "nothing: trained without cross-validation (--folds)",
            "chosen": chosen,
        }
    scores = cv["scores"]
    return {
        "evaluated_on": f"out of fold, {cv['folds']} folds ({cv['fold_source']}), by track",
        "track_accuracy": scores["model"]["accuracy"],
        "segment_accuracy": None,
        "n_tracks": scores["model"]["tracks"],
        "per_genre": cv["per_genre"],
        "track_confusion": cv["track_confusion"],
        "baseline": {
            "method": "MFCC mean+std, logistic regression, same folds",
            "track_accuracy": scores["baseline"]["accuracy"],
            "segment_accuracy": None,
        },
        "cross_validation": cv,
        "chosen": chosen,
        "note": "the registered model was fit on every track; the scores are its recipe's, "
        "out of fold",
    }


def train_head_model(settings: Settings, spec: Any, *, reporter: TrainReporter) -> Any:
    """``run_training`` for genre heads (see the module docstring); returns a TrainOutcome."""
    from worker.models.modelfile import save_model
    from worker.training.job import TrainOutcome, load_data, register

    started = time.perf_counter()
    arch, seed = spec.config.arch, spec.config.seed
    plan_sets = design(arch).sets
    stores = [
        FeatureStore(settings, s, progress=reporter.featurizing, warn=reporter.warn)
        for s in plan_sets
    ]
    reporter.stage("Reading the training data and its encoder features")
    data = load_data(settings, spec, stores[0])
    groups = read_fold_file(Path(spec.fold_file)).group_of if spec.fold_file else None
    hd = head_data(settings, arch, data, stores, groups)
    plan = fold_plan(spec.folds, spec.fold_file, data, seed)
    cv = None
    if plan is not None:
        degraded = {}
        for variant in spec.variants:
            reporter.stage(f"Featurizing copies of every track degraded as {variant}")
            degraded[variant] = head_data(settings, arch, data, stores, groups, variant=variant)
        cv = cross_validate_head(
            settings, arch, hd, plan, seed=seed, reporter=reporter, degraded=degraded
        )
    reporter.stage(f"Fitting {spec.name} ({arch}) on all {len(data.tracks)} tracks")
    everything = np.arange(len(data.tracks))
    fitted = fit_tracks(arch, hd, everything, folds_of=plan.folds_of if plan else None, seed=seed)
    head = to_head(arch, hd, fitted, settings.home)
    metrics = _metrics(cv, fitted.chosen)
    if fitted.thresholds is not None:
        metrics["class_thresholds"] = {
            g: round(float(t), 4) for g, t in zip(data.classes, fitted.thresholds, strict=True)
        }
    from worker.features.sets import model_feature_params, model_feature_version

    training = {
        "data": data.description,
        "recipe": {"arch": arch, "chosen": fitted.chosen},
        "folds": spec.folds or spec.fold_file,
        "spec": spec.to_dict(),
        "classes": list(data.classes),
    }
    directory = settings.model_dir / spec.name
    directory.mkdir(parents=True, exist_ok=True)
    artefacts = {}
    if cv is not None:
        picture = plot_confusion(
            np.asarray(cv["track_confusion"]),
            list(data.classes),
            directory / "cv-confusion.png",
            title=f"Out of fold ({cv['folds']} folds), tracks",
        )
        artefacts["cv_confusion"] = str(picture)
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    artefacts["metrics"] = str(directory / "metrics.json")
    path = directory / "model.pt"
    feature_params = model_feature_params(plan_sets)
    sha256 = save_model(
        path,
        model=head,
        arch=arch,
        input_size="native",
        classes=list(data.classes),
        feature_params=feature_params,
        metrics=metrics,
        normalisation={},
        training=training,
    )
    model_id = register(
        settings,
        spec,
        data=data,
        path=path,
        sha256=sha256,
        feature_params=feature_params,
        feature_version=model_feature_version(plan_sets),
        metrics=metrics,
        training=training,
    )
    decoded = sum(store.cache.decoded for store in stores)
    return TrainOutcome(
        model_id,
        spec.name,
        path,
        metrics,
        training,
        artefacts,
        decoded,
        time.perf_counter() - started,
    )
