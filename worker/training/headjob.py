"""The training job for genre heads on a pretrained encoder (``--arch mn04-head`` and
``mn04-zeroshot``): encoder rows of every track → out-of-fold scores → a head fit on all
the data → registered.

Unlike the CNN job there is no held-out test split for the registered model: it learns
from every track, and how well the recipe does on music it never heard is what the
cross-validation says (with a fold file grouped by artist, on artists it never heard). The
MFCC baseline and the zero-shot model are scored on the same folds, side by side.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrectl.errors import ConfigError
from genrectl.settings import Settings
from worker.features.encoder import EncoderParams
from worker.features.mel import FeatureParams
from worker.models.encoders import class_names
from worker.models.heads import GenreHead
from worker.models.zeroshot import load_zeroshot_map, prior_indices
from worker.training.baseline import baseline_probabilities, fit_baseline, mfcc_statistics
from worker.training.data import FeatureStore, TrainingData, segment_set
from worker.training.datasets import kfold
from worker.training.evaluation import confusion_matrix, genre_scores, plot_confusion
from worker.training.folds import read_fold_file
from worker.training.heads import (
    HeadRecipe,
    Rows,
    build_head,
    choose,
    fit_linear,
    macro_recall,
    stacked_inputs,
    track_scores,
    weights,
)
from worker.training.runs import TrainReporter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadData:
    """Every track's encoder rows (``rows.owner`` indexes ``data.tracks``), the degraded
    copies' rows by variant, labels and groups per track, and the zero-shot prior's
    per-genre encoder classes (None where some genre has none)."""

    data: TrainingData
    rows: Rows
    variant_rows: dict[str, Rows]
    labels: np.ndarray
    groups: list[str]
    prior: list[list[int]] | None
    sizes: dict[str, int]
    n_encoder_classes: int


def _rows(store: FeatureStore, data: TrainingData, *, variant: str = "") -> Rows:
    wanted = [(t, 0) for t in data.tracks]
    if variant:
        store.prepare(wanted, variant=variant)
    found = store.arrays(wanted, variant=variant)
    parts = [
        Rows({k: np.asarray(v, np.float32) for k, v in a.items()}, np.full(len(a["logits"]), i))
        for i, a in enumerate(found)
        if a is not None
    ]
    if not parts:
        raise ConfigError("no track gave encoder features")
    return Rows.concatenate(parts)


def head_data(
    settings: Settings,
    data: TrainingData,
    store: FeatureStore,
    *,
    variants: Sequence[str],
    groups: dict[str, str] | None,
) -> HeadData:
    params = store.params
    assert isinstance(params, EncoderParams)
    names = class_names(params.encoder)
    indices = prior_indices(data.classes, load_zeroshot_map(settings.home), names)
    label_of = {g: i for i, g in enumerate(data.classes)}
    return HeadData(
        data=data,
        rows=_rows(store, data),
        variant_rows={v: _rows(store, data, variant=v) for v in variants},
        labels=np.asarray([label_of[t.genre] for t in data.tracks], dtype=np.int64),
        groups=[(groups or {}).get(t.key, f"track:{t.key}") for t in data.tracks],
        prior=indices if all(indices) else None,
        sizes={name: shape[0] for name, shape in params.shapes.items()},
        n_encoder_classes=len(names),
    )


def _prior_log_probs(hd: HeadData, rows: Rows, temperature: float) -> np.ndarray | None:
    if hd.prior is None:
        return None
    head = build_head(
        arch="mn04-zeroshot",
        classes=hd.data.classes,
        recipe=HeadRecipe(inputs=()),
        sizes=hd.sizes,
        prior_map=hd.prior,
        n_encoder_classes=hd.n_encoder_classes,
        prior_weight=1.0,
        fitted=None,
    )
    with torch.no_grad():
        logits = head.prior_logits(torch.from_numpy(rows.arrays["logits"])) / temperature
    return torch.log_softmax(logits, dim=1).numpy()


def fit_on(
    hd: HeadData, tracks: np.ndarray, *, arch: str, recipe: HeadRecipe, seed: int
) -> tuple[GenreHead, dict[str, Any]]:
    """A head trained on ``tracks`` (indices into ``hd.data.tracks``) and their degraded
    copies, its l2 and prior weight chosen by inner cross-validation on them."""
    if arch == "mn04-zeroshot":
        if hd.prior is None:
            raise ConfigError(_unmapped(hd))
        head = build_head(
            arch=arch,
            classes=hd.data.classes,
            recipe=HeadRecipe(inputs=()),
            sizes=hd.sizes,
            prior_map=hd.prior,
            n_encoder_classes=hd.n_encoder_classes,
            prior_weight=1.0,
            fitted=None,
        )
        return head, {"kind": "zero-shot: no training"}
    train = Rows.concatenate(
        [hd.rows.of(tracks), *(r.of(tracks) for r in hd.variant_rows.values())]
    )
    prior = _prior_log_probs(hd, train, recipe.temperature)
    n_classes = len(hd.data.classes)
    choice = choose(
        train, hd.labels, hd.groups, recipe=recipe, n_classes=n_classes, prior=prior, seed=seed
    )

    fitted = fit_linear(
        stacked_inputs(train, recipe.inputs),
        hd.labels[train.owner],
        weights(train.owner, hd.labels[train.owner], n_classes),
        n_classes=n_classes,
        l2=choice.l2,
        max_iter=recipe.max_iter,
    )
    head = build_head(
        arch=arch,
        classes=hd.data.classes,
        recipe=recipe,
        sizes=hd.sizes,
        prior_map=hd.prior,
        n_encoder_classes=hd.n_encoder_classes,
        prior_weight=choice.prior_weight,
        fitted=fitted,
    )
    return head, {"l2": choice.l2, "prior_weight": choice.prior_weight, "inner": choice.scores}


def _unmapped(hd: HeadData) -> str:
    return "a zero-shot model needs " + _unmapped_note(hd.data).removeprefix("none: ")


def _scores(
    truth: np.ndarray, predicted: np.ndarray, sources: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy and per-genre mean recall, overall and per source folder."""
    n = len(classes)
    out: dict[str, Any] = {
        "tracks": len(truth),
        "accuracy": float((truth == predicted).mean()) if len(truth) else 0.0,
        "macro_recall": macro_recall(truth, predicted, n),
        "by_source": {},
    }
    for source in sorted(set(sources.tolist())):
        mask = sources == source
        out["by_source"][source] = {
            "tracks": int(mask.sum()),
            "accuracy": float((truth[mask] == predicted[mask]).mean()),
            "macro_recall": macro_recall(truth[mask], predicted[mask], n),
        }
    return out


@dataclass(frozen=True)
class FoldPlan:
    """Test tracks (indices into the data) of each fold, where they came from, and the tracks
    no fold tests (a fold file that does not name them)."""

    tests: list[np.ndarray]
    source: str
    untested: int


def fold_plan(
    spec_folds: int | None, fold_file: str | None, data: TrainingData, seed: int
) -> FoldPlan | None:
    index = data.by_key()
    if fold_file:
        assignment = read_fold_file(Path(fold_file))
        named = [k for k in data.keys if k in assignment.fold_of]
        if not named:
            raise ConfigError(
                f"the fold file {fold_file} names none of the {len(data.keys)} tracks"
            )
        tests = [
            np.asarray([index[k] for k in named if assignment.fold_of[k] == f], dtype=np.int64)
            for f in assignment.folds
        ]
        return FoldPlan(
            [t for t in tests if len(t)], f"fold file {fold_file}", len(data.keys) - len(named)
        )
    if spec_folds:
        splits = kfold(data.keys, data.genres, k=spec_folds, seed=seed)
        tests = [np.asarray([index[k] for k in s.test], dtype=np.int64) for s in splits]
        return FoldPlan(tests, f"{spec_folds} folds stratified by genre (seed {seed})", 0)
    return None


def _baseline_scores(
    settings: Settings, data: TrainingData, plan: FoldPlan, reporter: TrainReporter
) -> dict[int, np.ndarray]:
    """Out-of-fold track probabilities of the MFCC + logistic regression baseline, fitted on
    the reference mel's 6 s segments of the same training tracks."""
    store = FeatureStore(settings, FeatureParams(), progress=reporter.featurizing)
    store.prepare([(t, 0) for t in data.tracks])
    n = len(data.classes)
    out: dict[int, np.ndarray] = {}
    for test in plan.tests:
        train = np.setdiff1d(np.concatenate(plan.tests), test)
        train_set, _ = segment_set(data, [data.tracks[i].key for i in train], store)
        test_set, _ = segment_set(data, [data.tracks[i].key for i in test], store)
        model = fit_baseline(mfcc_statistics(mel_db=train_set.mel), train_set.labels)
        probs = baseline_probabilities(model, mfcc_statistics(mel_db=test_set.mel), n_classes=n)
        from worker.inference.predict import track_probabilities

        out.update(track_probabilities(probs, test_set.track_ids))
    return out


def cross_validate_head(
    settings: Settings,
    hd: HeadData,
    plan: FoldPlan,
    *,
    arch: str,
    recipe: HeadRecipe,
    seed: int,
    reporter: TrainReporter,
) -> dict[str, Any]:
    """Out-of-fold scores of the recipe, of the zero-shot prior alone and of the MFCC
    baseline on the same folds, overall and per source folder; per-genre scores and the
    confusion matrix of the recipe; per-variant scores on degraded copies of the test
    tracks; what inner cross-validation chose in each fold."""
    classes = list(hd.data.classes)
    oof: dict[str, dict[int, np.ndarray]] = {"model": {}, "zeroshot": {}}
    oof.update({f"model on {v}": {} for v in hd.variant_rows})
    choices = []
    for number, test in enumerate(plan.tests, start=1):
        reporter.stage(f"fold {number}/{len(plan.tests)}: {len(test)} test tracks")
        train = np.setdiff1d(np.concatenate(plan.tests), test)
        head, chosen = fit_on(hd, train, arch=arch, recipe=recipe, seed=seed + number)
        choices.append({"fold": number, **chosen})
        oof["model"].update(track_scores(head, hd.rows.of(test)))
        for variant, rows in hd.variant_rows.items():
            oof[f"model on {variant}"].update(track_scores(head, rows.of(test)))
        if hd.prior is not None:
            zeroshot, _ = fit_on(hd, train, arch="mn04-zeroshot", recipe=recipe, seed=seed)
            oof["zeroshot"].update(track_scores(zeroshot, hd.rows.of(test)))
    reporter.stage("MFCC baseline on the same folds")
    oof["baseline"] = _baseline_scores(settings, hd.data, plan, reporter)
    tested = np.asarray(sorted(oof["model"]), dtype=np.int64)
    truth = hd.labels[tested]
    sources = np.asarray([hd.data.tracks[i].source or "data" for i in tested])
    results: dict[str, Any] = {}
    for name, table in oof.items():
        if not table:
            continue
        predicted = np.asarray([int(np.argmax(table[i])) for i in tested])
        results[name] = _scores(truth, predicted, sources, classes)
    predicted = np.asarray([int(np.argmax(oof["model"][i])) for i in tested])
    confusion = confusion_matrix(truth, predicted, n_classes=len(classes))
    return {
        "folds": len(plan.tests),
        "fold_source": plan.source,
        "untested_tracks": plan.untested,
        "scores": results,
        "per_genre": genre_scores(confusion, classes),
        "track_confusion": confusion.tolist(),
        "choices": choices,
    }


def _metrics(cv: dict[str, Any] | None, chosen: dict[str, Any]) -> dict[str, Any]:
    """The registry's metrics of a head: out-of-fold when cross-validated, else none."""
    if cv is None:
        return {
            "evaluated_on": "nothing: trained without cross-validation (pass --folds)",
            "chosen": chosen,
        }
    scores = cv["scores"]
    baseline = scores.get("baseline", {})
    return {
        "evaluated_on": f"out of fold, {cv['folds']} folds ({cv['fold_source']}), by track",
        "track_accuracy": scores["model"]["accuracy"],
        "segment_accuracy": None,
        "n_tracks": scores["model"]["tracks"],
        "per_genre": cv["per_genre"],
        "track_confusion": cv["track_confusion"],
        "baseline": {
            "method": "MFCC mean+std, logistic regression, same folds",
            "track_accuracy": baseline.get("accuracy"),
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
    params = EncoderParams()
    store = FeatureStore(settings, params, progress=reporter.featurizing)
    reporter.stage("Reading the training data and its encoder features")
    data = load_data(settings, spec, store)
    groups = read_fold_file(Path(spec.fold_file)).group_of if spec.fold_file else None
    hd = head_data(settings, data, store, variants=spec.variants, groups=groups)
    recipe = HeadRecipe(variants=tuple(spec.variants))
    arch, seed = spec.config.arch, spec.config.seed
    plan = fold_plan(spec.folds, spec.fold_file, data, seed)
    cv = None
    if plan is not None:
        cv = cross_validate_head(
            settings, hd, plan, arch=arch, recipe=recipe, seed=seed, reporter=reporter
        )
    reporter.stage(f"Fitting {spec.name} ({arch}) on all {len(data.tracks)} tracks")
    head, chosen = fit_on(hd, np.arange(len(data.tracks)), arch=arch, recipe=recipe, seed=seed)
    metrics = _metrics(cv, chosen)
    training = {
        "data": data.description,
        "recipe": {**recipe.__dict__, "arch": arch},
        "prior": "zero-shot map" if hd.prior is not None else _unmapped_note(data),
        "folds": spec.folds or spec.fold_file,
        "spec": spec.to_dict(),
        "classes": list(data.classes),
    }
    directory = settings.model_dir / spec.name
    directory.mkdir(parents=True, exist_ok=True)
    artefacts = {}
    if cv is not None:
        artefacts["cv_confusion"] = str(
            plot_confusion(
                np.asarray(cv["track_confusion"]),
                list(data.classes),
                directory / "cv-confusion.png",
                title=f"Out of fold ({cv['folds']} folds), tracks",
            )
        )
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    artefacts["metrics"] = str(directory / "metrics.json")
    path = directory / "model.pt"
    sha256 = save_model(
        path,
        model=head,
        arch=arch,
        input_size="native",
        classes=list(data.classes),
        feature_params=params.to_dict(),
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
        params=params,
        metrics=metrics,
        training=training,
    )
    seconds = time.perf_counter() - started
    return TrainOutcome(
        model_id, spec.name, path, metrics, training, artefacts, store.cache.decoded, seconds
    )


def _unmapped_note(data: TrainingData) -> str:
    return (
        f"none: not every genre of {list(data.classes)} has encoder classes in the zero-shot "
        "map (zeroshot-map.json in GENRECTL_HOME)"
    )
