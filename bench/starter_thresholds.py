"""Give the shipped starter its per-class thresholds without touching its weights.

    GENRECTL_HOME=$(mktemp -d) .venv/bin/python bench/starter_thresholds.py \\
        ../shared/data/gtzan-mini ../shared/data/gtzan-clips \\
        --folds ../shared/data/gtzan-clips/folds.csv [--write]

Fits the starter's recipe on all its tracks exactly as ``genrectl train ... --folds`` does
(``worker.training.headjob.fit_tracks``, seed 0, inner folds from the fold file), checks that
inner cross-validation chose the numbers the shipped starter holds (lam, C, w, T), and takes
the per-class thresholds that fit calibrated on its inner out-of-fold answers. With
``--write`` it stores them as ``metrics["class_thresholds"]`` in
``genrectl/models/starter.pt`` (the state dict loaded and saved as it is: the script checks
every tensor is unchanged) and in ``starter.json`` (with the new sha256).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.registry import STARTER_DIR
from genrectl.settings import Settings
from worker.models.modelfile import load_model, save_model
from worker.training.data import FeatureStore
from worker.training.folds import read_fold_file
from worker.training.headjob import design, fit_tracks, fold_plan, head_data
from worker.training.job import TrainSpec, load_data
from worker.training.runs import TrainReporter

ARCH = "encoder-head"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="+", type=Path)
    parser.add_argument("--folds", type=Path, required=True)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    settings = Settings.from_env()
    reporter = TrainReporter()
    spec = TrainSpec(name="starter", data=tuple(map(str, args.data)), fold_file=str(args.folds))
    stores = [
        FeatureStore(settings, s, progress=reporter.featurizing, warn=reporter.warn)
        for s in design(ARCH).sets
    ]
    data = load_data(settings, spec, stores[0])
    hd = head_data(settings, ARCH, data, stores, read_fold_file(args.folds).group_of)
    plan = fold_plan(None, str(args.folds), data, spec.config.seed)
    assert plan is not None
    fitted = fit_tracks(
        ARCH, hd, np.arange(len(data.tracks)), folds_of=plan.folds_of, seed=spec.config.seed
    )
    meta = json.loads((STARTER_DIR / "starter.json").read_text())
    shipped = meta["metrics"]["chosen"]
    keys = ("lam", "C", "w", "T")
    same = all(abs(float(fitted.chosen[k]) - float(shipped[k])) < 1e-6 for k in keys)
    print(
        "chosen now:",
        {k: fitted.chosen[k] for k in keys},
        "shipped:",
        {k: shipped[k] for k in keys},
    )
    if not same:
        raise SystemExit("the recipe chose other numbers than the shipped starter's: not written")
    assert fitted.thresholds is not None
    thresholds = {
        c: round(float(t), 4) for c, t in zip(data.classes, fitted.thresholds, strict=True)
    }
    print("class_thresholds:", json.dumps(thresholds))
    if not args.write:
        return
    path = STARTER_DIR / "starter.pt"
    loaded = load_model(path, expected_sha256=meta["sha256"])
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    metrics = {**loaded.metrics, "class_thresholds": thresholds}
    sha256 = save_model(
        path,
        model=loaded.model,
        arch=loaded.arch,
        input_size=loaded.input_size,
        classes=loaded.classes,
        feature_params=loaded.feature_params,
        metrics=metrics,
        normalisation=loaded.normalisation,
        training=loaded.training,
    )
    after = load_model(path, expected_sha256=sha256).model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights changed"
    meta["metrics"]["class_thresholds"] = thresholds
    meta["sha256"] = sha256
    (STARTER_DIR / "starter.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path} (sha256 {sha256}); weights unchanged")


if __name__ == "__main__":
    main()
