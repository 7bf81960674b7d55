"""Choosing the model: k-fold accuracy and time per epoch of each architecture and input size.

    .venv/bin/python bench/bench_models.py [--gtzan DIR] [--folds 5] [--segments 5]
        [--run ARCH:INPUT:EPOCHS[:aug][:specaug][:hopS] ...] [--lr 1e-3] [--batch-size 32]
        [--weight-decay 1e-4] [--lr-schedule cosine|onecycle|constant] [--json PATH]

Featurizes a GTZAN-layout folder into memory (``--segments`` 6 s segments per track, and a
pitch-shifted copy of every track when a run asks for ``aug``, overlapping windows every S
seconds when it asks for ``hopS``, e.g. ``hop1``), makes ``--folds`` stratified
folds on tracks (test = the held-out fold, validation = 10 % of the rest), trains each run on
every fold with ``worker.training.loop.fit`` and scores the best-validation-loss weights on the
test fold, at segment level and at track level (mean of segment probabilities). The MFCC +
logistic-regression baseline is scored on the same folds. Prints one table: mean ± std over
folds, median and minimum wall seconds and median CPU seconds per epoch (train + validation),
total wall time. The minimum is the figure to compare on a shared machine: other work only
ever adds to an epoch's time. A second table times single training steps of each
architecture (minimum of ``--step-repeats``) and the training epoch they imply.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrectl.settings import Settings
from worker.audio.decode import load_segments
from worker.features.mel import FeatureParams, mel_db
from worker.models.cnn import build_model
from worker.models.device import to_device
from worker.training.baseline import evaluate_baseline
from worker.training.cache import WINDOWS_PER_SEGMENT
from worker.training.datasets import (
    SegmentSet,
    Split,
    augmentation_steps,
    discover_labelled_folder,
    kfold,
    pitch_shift_segments,
)
from worker.training.evaluation import evaluate_model
from worker.training.loop import LR_SCHEDULES, EpochStats, TrainConfig, fit

PARAMS = FeatureParams()
DEFAULT_RUNS = (
    "cnn:native:30",
    "cnn:native:30:aug",
    "densenet121:native:10",
    "densenet121:native:3",
    "densenet121:224:3",
)


@dataclass
class Corpus:
    """The featurized dataset: ``data.track_ids`` index ``keys``; ``augmented`` has the same
    track ids, pitch-shifted."""

    keys: list[str]
    genres: list[str]
    classes: list[str]
    data: SegmentSet
    augmented: SegmentSet | None
    seconds: float
    windows: dict[float, SegmentSet] = field(default_factory=dict)


@dataclass
class RunResult:
    name: str
    epochs: int
    segment_acc: list[float] = field(default_factory=list)
    track_acc: list[float] = field(default_factory=list)
    best_epochs: list[int] = field(default_factory=list)
    wall_per_epoch: list[float] = field(default_factory=list)
    cpu_per_epoch: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _track_set(mel: np.ndarray, *, label: int, track_id: int) -> SegmentSet:
    n = len(mel)
    return SegmentSet(mel, np.full(n, label, dtype=np.int64), np.full(n, track_id, dtype=np.int64))


def featurize(
    root: Path, *, segments: int, windows: int, augment: bool, hops: Sequence[float], seed: int
) -> Corpus:
    """Decode and featurize every track of ``root`` (and a pitch-shifted copy if ``augment``;
    overlapping windows every ``hop`` seconds for each of ``hops``, at most ``windows`` per
    track)."""
    started = time.perf_counter()
    tracks = discover_labelled_folder(root)
    classes = sorted({t.genre for t in tracks})
    parts, shifted = [], []
    cuts: dict[float, list[SegmentSet]] = {hop: [] for hop in hops}
    for track_id, track in enumerate(tracks):
        owner = {"label": classes.index(track.genre), "track_id": track_id}
        audio = load_segments(track.path, params=PARAMS, max_segments=segments, min_seconds=3.0)
        parts.append(_track_set(mel_db(segments=audio.audio, params=PARAMS), **owner))
        if augment:
            steps = augmentation_steps(track.key, seed=seed)
            moved = pitch_shift_segments(audio.audio, sr=PARAMS.sample_rate, n_steps=steps)
            shifted.append(_track_set(mel_db(segments=moved, params=PARAMS), **owner))
        for hop, found in cuts.items():
            cut = load_segments(
                track.path,
                params=PARAMS,
                max_segments=windows,
                min_seconds=3.0,
                hop_seconds=hop,
            )
            found.append(_track_set(mel_db(segments=cut.audio, params=PARAMS), **owner))
    return Corpus(
        keys=[t.key for t in tracks],
        genres=[t.genre for t in tracks],
        classes=classes,
        data=SegmentSet.concatenate(parts),
        augmented=SegmentSet.concatenate(shifted) if augment else None,
        seconds=time.perf_counter() - started,
        windows={hop: SegmentSet.concatenate(sets) for hop, sets in cuts.items()},
    )


def fold_sets(
    corpus: Corpus, split: Split, *, augment: bool, hop: float | None = None
) -> tuple[SegmentSet, ...]:
    """(train, val, test) segments of one fold; train gains the pitch-shifted copies if asked,
    and is cut into overlapping windows every ``hop`` seconds if given."""
    index = {key: i for i, key in enumerate(corpus.keys)}
    train, val, test = ([index[k] for k in part] for part in (split.train, split.val, split.test))
    train_set = (corpus.data if hop is None else corpus.windows[hop]).of_tracks(train)
    if augment and corpus.augmented is not None:
        train_set = SegmentSet.concatenate([train_set, corpus.augmented.of_tracks(train)])
    return train_set, corpus.data.of_tracks(val), corpus.data.of_tracks(test)


def run_fold(
    config: TrainConfig,
    corpus: Corpus,
    split: Split,
    *,
    augment: bool,
    hop: float | None,
    label: str,
) -> tuple[float, float, int, list[float], list[float]]:
    """Train on one fold; (segment acc, track acc, best epoch, wall s/epoch, cpu s/epoch)."""
    train, val, test = fold_sets(corpus, split, augment=augment, hop=hop)
    cpu_marks = [time.process_time()]

    def tick(stats: EpochStats) -> None:
        cpu_marks.append(time.process_time())
        print(f"  {label}: {stats}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        fitted = fit(
            config=config,
            train=train,
            val=val,
            classes=corpus.classes,
            checkpoint_dir=Path(tmp),
            resume=False,
            progress=tick,
        )
    scores = evaluate_model(fitted.model, test, classes=corpus.classes)
    cpu = np.diff(cpu_marks).tolist()
    return (
        scores.segment_accuracy,
        scores.track_accuracy,
        fitted.best_epoch,
        [s.seconds for s in fitted.history],
        cpu[1:] if len(cpu) > 1 else cpu,  # the first also counts model set-up
    )


def run_config(
    spec: str, corpus: Corpus, folds: list[Split], args: argparse.Namespace
) -> RunResult:
    """Train and test one ``ARCH:INPUT:EPOCHS[:aug][:specaug][:hopS]`` run on every fold
    (``aug``: pitch-shifted copies of the training tracks; ``specaug``: SpecAugment masking;
    ``hopS``: training windows every S seconds)."""
    arch, input_size, epochs, *rest = spec.split(":")
    options = set(rest)
    hop = _hop(spec)
    config = TrainConfig(
        arch=arch,
        input_size=input_size,
        epochs=int(epochs),
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        lr_schedule=args.lr_schedule,
        seed=args.seed,
        device="cpu",
        spec_augment="specaug" in options,
    )
    result = RunResult(name=spec, epochs=config.epochs)
    started = time.perf_counter()
    for i, split in enumerate(folds):
        seg, trk, best, wall, cpu = run_fold(
            config,
            corpus,
            split,
            augment="aug" in options,
            hop=hop,
            label=f"{spec} fold {i + 1}",
        )
        result.segment_acc.append(seg)
        result.track_acc.append(trk)
        result.best_epochs.append(best)
        result.wall_per_epoch += wall
        result.cpu_per_epoch += cpu
    result.seconds = time.perf_counter() - started
    return result


def _hop(spec: str) -> float | None:
    hops = [float(o[3:]) for o in spec.split(":")[3:] if o.startswith("hop")]
    return hops[0] if hops else None


def run_baseline(corpus: Corpus, folds: list[Split]) -> RunResult:
    """The MFCC + logistic-regression baseline, trained on each fold's training part."""
    result = RunResult(name="mfcc+logreg", epochs=0)
    started = time.perf_counter()
    for split in folds:
        train, _, test = fold_sets(corpus, split, augment=False)
        scores = evaluate_baseline(train, test, classes=corpus.classes)
        result.segment_acc.append(scores.segment_accuracy)
        result.track_acc.append(scores.track_accuracy)
    result.seconds = time.perf_counter() - started
    return result


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{100 * statistics.mean(values):5.1f} ± {100 * statistics.pstdev(values):4.1f}"


def _median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):6.1f}" if values else "     -"


def format_table(results: list[RunResult]) -> str:
    header = (
        f"{'run':24} {'epochs':>6} {'segment acc %':>14} {'track acc %':>14} "
        f"{'best ep':>8} {'s/epoch':>7} {'min s/ep':>8} {'cpu-s/ep':>8} {'total s':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        best = f"{statistics.median(r.best_epochs):.0f}" if r.best_epochs else "-"
        lines.append(
            f"{r.name:24} {r.epochs:6d} {_mean_std(r.segment_acc):>14} "
            f"{_mean_std(r.track_acc):>14} {best:>8} {_median(r.wall_per_epoch):>7} "
            f"{min(r.wall_per_epoch, default=float('nan')):8.1f} "
            f"{_median(r.cpu_per_epoch):>8} {r.seconds:8.0f}"
        )
    return "\n".join(lines)


def step_seconds(arch: str, input_size: str, *, batch_size: int, repeats: int) -> float:
    """Least wall seconds of one training step (forward, backward, AdamW) on a batch of
    ``batch_size`` mel segments: the minimum over ``repeats`` steps after a warm-up one, since
    other work on a shared machine only ever adds time."""
    torch.manual_seed(0)
    model = to_device(build_model(arch=arch, n_classes=10, input_size=input_size), "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    mel = -80.0 * torch.rand(batch_size, 1, PARAMS.n_mels, PARAMS.n_frames)
    labels = torch.randint(0, 10, (batch_size,))
    model.train()
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(mel), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return min(times[1:])


def format_step_table(runs: Sequence[str], corpus: Corpus, args: argparse.Namespace) -> str:
    """Quiet-machine seconds per training step and the epoch (training part) they imply."""
    n_train = round(len(corpus.data) * (1 - 1 / args.folds) * 0.9)
    lines = [
        f"{'arch:input':24} {'s/step':>7} {'est. s/epoch':>12}  (batch {args.batch_size}, "
        f"{n_train} training segments, x2 with aug; min of {args.step_repeats} steps)"
    ]
    for arch_input in dict.fromkeys(":".join(spec.split(":")[:2]) for spec in runs):
        arch, input_size = arch_input.split(":")
        step = step_seconds(arch, input_size, batch_size=args.batch_size, repeats=args.step_repeats)
        lines.append(f"{arch_input:24} {step:7.2f} {step * n_train / args.batch_size:12.1f}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gtzan", type=Path, default=Path("/work/shared/data/gtzan-mini"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--segments", type=int, default=5)
    parser.add_argument(
        "--windows",
        type=int,
        default=WINDOWS_PER_SEGMENT * Settings.from_env().max_segments,
        help="overlapping training windows per track at most (as the training cache)",
    )
    parser.add_argument("--run", action="append", help=f"default: {' '.join(DEFAULT_RUNS)}")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="cosine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fold-limit", type=int, help="train on the first N folds only (a quick timing run)"
    )
    parser.add_argument("--step-repeats", type=int, default=8, help="training steps timed")
    parser.add_argument("--json", type=Path, help="also write every fold's numbers here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    runs = args.run or list(DEFAULT_RUNS)
    augment = any("aug" in spec.split(":")[3:] for spec in runs)
    hops = sorted({hop for spec in runs if (hop := _hop(spec)) is not None})
    corpus = featurize(
        args.gtzan,
        segments=args.segments,
        windows=args.windows,
        augment=augment,
        hops=hops,
        seed=args.seed,
    )
    folds = kfold(corpus.keys, corpus.genres, k=args.folds, seed=args.seed)[: args.fold_limit]
    print(
        f"{len(corpus.keys)} tracks, {len(corpus.data)} segments, {len(corpus.classes)} genres, "
        f"{len(folds)} of {args.folds} folds; featurized in {corpus.seconds:.0f} s"
        f"{' (with pitch-shifted copies)' if augment else ''}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    results = [run_baseline(corpus, folds)]
    for spec in runs:
        results.append(run_config(spec, corpus, folds, args))
        print(format_table(results), file=sys.stderr, flush=True)  # so far, if cut short
    print(format_table(results))
    print()
    print(format_step_table(runs, corpus, args))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2, default=float))


if __name__ == "__main__":
    main()
