"""``genrectl train``: train, evaluate and register a model (in-process, or on the gpu queue).

Worker code (torch) is imported inside the command, never at module import.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy import select

from cli.app import Context, emit_json, json_option, pass_context
from db.engine import session_scope
from db.models import Model
from genrectl.errors import GenreError
from genrectl.settings import Settings
from worker.models.encoders import HEAD_ARCHS  # light: no torch

if TYPE_CHECKING:
    from worker.training.runs import TrainReporter

POLL_S = 2.0


class FoldsParam(click.ParamType):
    """``--folds``: an integer K >= 2, or the path of a fold file."""

    name = "K|FILE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | Path):
            return value
        text = str(value)
        if text.isdigit():
            if int(text) < 2:
                self.fail(f"{text} folds: need at least 2", param, ctx)
            return int(text)
        path = Path(text)
        if not path.is_file():
            self.fail(f"'{text}' is neither a number of folds nor a fold file", param, ctx)
        return path


_SPLIT_NAMES = {
    "train": ("train.txt", "train_filtered.txt"),
    "val": ("valid.txt", "val.txt", "validation.txt", "valid_filtered.txt"),
    "test": ("test.txt", "test_filtered.txt"),
}


def pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def pct_std(score: dict[str, Any]) -> str:
    """``{"mean": .62, "std": .05}`` → ``62.0 ± 5.0%``; no std → ``62.0%``."""
    if score.get("std") is None:
        return pct(score["mean"])
    return f"{100 * score['mean']:.1f} ± {100 * score['std']:.1f}%"


@contextmanager
def live_reporter(*, quiet: bool) -> Iterator[TrainReporter]:
    """A TrainReporter drawing a featurizing bar and one bar per training run (epochs, with
    the last epoch's loss and accuracy) on stderr; silent with ``quiet``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from cli.render import stderr
    from worker.training.runs import TrainReporter

    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[scores]}"),
        TimeElapsedColumn(),
        console=stderr(),
        disable=quiet,
    )

    class Live(TrainReporter):
        def __init__(self) -> None:
            self.tasks: dict[str, Any] = {}
            self.featurized = 0  # files done by earlier featurizing passes
            self.latest = 0

        def _task(self, name: str, total: int) -> Any:
            if name not in self.tasks:
                self.tasks[name] = progress.add_task(name, total=total, scores="")
            return self.tasks[name]

        def stage(self, text: str) -> None:
            super().stage(text)
            if not quiet:
                progress.console.print(text)

        def featurizing(self, done: int, total: int) -> None:
            if done == 0:  # a new pass (e.g. the augmented copies): add it to the bar
                self.featurized += self.latest
            self.latest = done
            task = self._task("Featurizing", total)
            base = self.featurized
            progress.update(task, completed=base + done, total=base + total)

        def starting(self, run: str, *, epochs: int, segments: int) -> None:
            super().starting(run, epochs=epochs, segments=segments)
            description = f"Training {run} ({segments} segments)"
            self.tasks[run] = progress.add_task(description, total=epochs, scores="")

        def epoch(self, run: str, stats: Any, epochs: int) -> None:
            super().epoch(run, stats, epochs)
            scores = (
                f"train {stats.train_loss:.3f} {pct(stats.train_acc)} · "
                f"val {stats.val_loss:.3f} {pct(stats.val_acc)}"
            )
            progress.update(self._task(run, epochs), completed=stats.epoch, scores=scores)

    with progress:
        yield Live()


def split_files(paths: tuple[Path, ...]) -> tuple[Path, Path, Path] | None:
    """``--split-file`` given three times (train, val, test) or once with a folder holding
    train.txt, valid.txt and test.txt (or GTZAN's *_filtered.txt)."""
    if not paths:
        return None
    if len(paths) == 1 and paths[0].is_dir():
        found = []
        for part, names in _SPLIT_NAMES.items():
            match = next((paths[0] / n for n in names if (paths[0] / n).is_file()), None)
            if match is None:
                raise click.BadParameter(
                    f"'{paths[0]}' has no {part} file ({' or '.join(names)})",
                    param_hint="--split-file",
                )
            found.append(match)
        return found[0], found[1], found[2]
    if len(paths) != 3 or any(p.is_dir() for p in paths):
        raise click.BadParameter(
            f"give three files (train, val, test) or one folder, not {len(paths)} paths",
            param_hint="--split-file",
        )
    return paths[0], paths[1], paths[2]


def default_name(arch: str, data: tuple[Path, ...]) -> str:
    base = "+".join(d.resolve().name for d in data) if data else "library"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{arch}-{base}-{stamp}")[:128]


def _check_args(opts: dict[str, Any]) -> None:
    """Flag combinations click cannot check; each error names the flag."""
    if bool(opts["data"]) == opts["from_library"]:
        raise click.UsageError("give labelled folders DATA or --from-library (exactly one)")
    for folder in opts["data"]:
        if not folder.is_dir():
            raise click.BadParameter(f"'{folder}' is not a folder", param_hint="DATA")
    if opts["segment_seconds"] != 6.0:
        raise click.BadParameter(
            f"{opts['segment_seconds']:g} is not supported yet: only 6 (the reference's "
            "segments, and what the library's shards hold)",
            param_hint="--segment-seconds",
        )
    if opts["folds"] and opts["split_file"]:
        raise click.BadParameter("a fixed split cannot be cross-validated", param_hint="--folds")
    head = opts["arch"] in HEAD_ARCHS
    if opts["variants"] and not head:
        raise click.BadParameter(
            f"degraded copies score genre heads ({', '.join(HEAD_ARCHS)}), not {opts['arch']}",
            param_hint="--variants",
        )
    if opts["pretrained"] and opts["arch"] != "densenet121":
        raise click.BadParameter(
            f"ImageNet weights are for --arch densenet121, not {opts['arch']}",
            param_hint="--pretrained",
        )


def build_spec(settings: Settings, opts: dict[str, Any]) -> dict[str, Any]:
    """The task's JSON spec from the command's options (checked here, parsed by the worker)."""
    _check_args(opts)
    name = opts["name"] or default_name(opts["arch"], opts["data"])
    with session_scope(settings) as session:
        if session.scalar(select(Model.id).where(Model.name == name)) is not None:
            raise click.BadParameter(f"a model named {name!r} exists", param_hint="--name")
    files = split_files(opts["split_file"])
    folds = opts["folds"]
    split = None
    if files is not None:
        from worker.training.datasets import read_split_files  # numpy only: parses the user's files

        parsed = read_split_files(*files)
        split = [parsed.train, parsed.val, parsed.test]
    return {
        "name": name,
        "data": [str(d.resolve()) for d in opts["data"]],
        "from_library": opts["from_library"],
        "config": {
            "arch": opts["arch"],
            "input_size": opts["input_size"],
            "epochs": opts["epochs"],
            "batch_size": opts["batch_size"],
            "lr": opts["lr"],
            "weight_decay": opts["weight_decay"],
            "lr_schedule": opts["lr_schedule"],
            "label_smoothing": opts["label_smoothing"],
            "seed": opts["seed"],
            "spec_augment": opts["spec_augment"],
            "pretrained": str(opts["pretrained"].resolve()) if opts["pretrained"] else None,
        },
        "augment": opts["augment"],
        "folds": folds if isinstance(folds, int) else None,
        "fold_file": str(folds.resolve()) if isinstance(folds, Path) else None,
        "variants": list(opts["variants"]),
        "split": split,
        "split_source": ", ".join(str(f) for f in files) if files else None,
        "segment_seconds": opts["segment_seconds"],
        "promote": opts["promote"],
        "train_hop_seconds": opts["train_hop"],
    }


def _train_embedded(obj: Context, spec: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    from worker.training.job import TrainSpec, run_training

    parsed = TrainSpec.from_dict(spec)
    with live_reporter(quiet=quiet) as reporter:
        return run_training(obj.settings, parsed, reporter=reporter).summary()


def _train_distributed(settings: Settings, spec: dict[str, Any], *, wait: bool) -> dict[str, Any]:
    """Enqueue ``genrectl.train`` by name; with ``wait``, poll until the model is registered
    (or the task fails)."""
    from scheduler.celery_app import create_app
    from scheduler.tasknames import ROUTES, TRAIN

    result = create_app(settings).send_task(TRAIN, kwargs={"spec": spec}, **ROUTES[TRAIN])
    if not wait:
        return {"name": spec["name"], "task_id": result.id, "queued": True}
    while True:
        with session_scope(settings) as session:
            model = session.scalar(select(Model).where(Model.name == spec["name"]))
            if model is not None:
                return {"model_id": model.id, "name": model.name, **_row_summary(model)}
        if result.failed():
            raise GenreError(f"training {spec['name']!r} failed on the worker: {result.result}")
        time.sleep(POLL_S)


def _row_summary(model: Model) -> dict[str, Any]:
    metrics = model.metrics or {}
    return {
        "path": model.path,
        "track_accuracy": metrics.get("track_accuracy"),
        "segment_accuracy": metrics.get("segment_accuracy"),
        "baseline": metrics.get("baseline"),
        "cross_validation": metrics.get("cross_validation"),
        "split": (model.training or {}).get("split"),
        "data": (model.training or {}).get("data"),
    }


def accuracy_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Rows of (what, track accuracy, segment accuracy) for a training summary."""
    baseline = summary.get("baseline") or {}
    rows = [
        ["network", pct(summary["track_accuracy"]), pct(summary["segment_accuracy"])],
        [
            "MFCC+LR baseline",
            pct(baseline.get("track_accuracy")),
            pct(baseline.get("segment_accuracy")),
        ],
    ]
    cv: dict[str, Any] = summary.get("cross_validation") or {}
    for who, prefix in (("network", ""), ("baseline", "baseline_")) if cv else ():
        rows.append(
            [
                f"{who}, {cv['folds']}-fold CV",
                pct_std(cv[f"{prefix}track_accuracy"]),
                pct_std(cv[f"{prefix}segment_accuracy"]),
            ]
        )
    return rows


_SCORE_NAMES = {"model": "this recipe", "zeroshot": "mn04 zero-shot", "baseline": "MFCC baseline"}


def out_of_fold_rows(scores: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of out-of-fold track accuracy by source folder: the recipe, the
    zero-shot model, the baseline, and the recipe on degraded copies."""
    sources = sorted(scores["model"]["by_source"])
    columns = [
        "out of fold",
        *(f"{s} ({scores['model']['by_source'][s]['tracks']})" for s in sources),
    ]
    columns += ["per-genre mean"]
    rows = []
    for key, score in scores.items():
        name = _SCORE_NAMES.get(key, key.replace("model on", "this recipe on"))
        cells = [pct(score["by_source"].get(s, {}).get("accuracy")) for s in sources]
        rows.append([name, *cells, pct(score["macro_recall"])])
    return columns, rows


def _print_summary(summary: dict[str, Any]) -> None:
    from cli.render import stdout, table

    echo = click.echo
    if summary.get("queued"):
        echo(f"queued training of {summary['name']} (task {summary['task_id']})")
        return
    echo(f"Registered model {summary['name']} ({summary['path']})")
    scores = (summary.get("cross_validation") or {}).get("scores")
    if summary.get("arch") in HEAD_ARCHS:
        if scores:
            echo(f"Out of fold: {summary['evaluated_on']}")
            columns, rows = out_of_fold_rows(scores)
            stdout().print(table(columns, rows))
        else:
            echo("No cross-validation (pass --folds K or a fold file to score the recipe).")
    else:
        stdout().print(table(["test accuracy", "tracks", "6 s segments"], accuracy_rows(summary)))
        if scores:
            echo(f"Out of fold, pooled: {summary['cross_validation'].get('fold_source', '')}")
            columns, rows = out_of_fold_rows(scores)
            stdout().print(table(columns, rows))
    split = summary.get("split") or {}
    if split.get("sizes"):
        parts = ", ".join(
            f"{k} {v['tracks']} tracks/{v['segments']} segments" for k, v in split["sizes"].items()
        )
        echo(f"Split ({split.get('kind')}): {parts}")
    for name, path in (summary.get("artefacts") or {}).items():
        echo(f"  {name}: {path}")
    data = summary.get("data") or {}
    if data.get("unusable"):
        echo(f"{len(data['unusable'])} files could not be used, e.g. {data['unusable'][0]}")
    if data.get("without_usable_tag"):
        echo(f"{data['without_usable_tag']} library tracks have no usable genre tag (ignored)")


@click.command()
@click.argument("data", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--from-library", is_flag=True, help="Learn from library tracks with genre tags.")
@click.option("--name", help="Registry name (default: <arch>-<data>-<date>).")
@click.option(
    "--arch",
    type=click.Choice(["encoder-head", "mn04-zeroshot", "cnn", "gapcnn", "densenet121"]),
    default="encoder-head",
    show_default=True,
    help="encoder-head: the pretrained mn04 and msd_fcn encoders' genre classes, calibrated, "
    "and a head on msd_fcn's embedding (seconds on a CPU); mn04-zeroshot: mn04's own genre "
    "classes, no training; cnn: the reference's CNN; "
    "gapcnn: a small CNN pooling over the whole spectrogram; densenet121: the reference's.",
)
@click.option(
    "--input-size",
    type=click.Choice(["native", "224"]),
    default="native",
    show_default=True,
    # Measured in bench/bench_models.py: 224x224 costs ~4.5x more per DenseNet step on CPU
    # with no better accuracy at equal epochs (BENCHMARKS.md), so native is the default.
    help="Network input: the 90x130 mel as it is, or resized to 224x224 as the reference did.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=15, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=32, show_default=True)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=2e-3,
    show_default=True,
    help="Peak learning rate (AdamW).",
)
@click.option(
    "--weight-decay",
    type=click.FloatRange(min=0),
    default=1e-3,
    show_default=True,
    help="AdamW weight decay.",
)
@click.option(
    "--label-smoothing",
    type=click.FloatRange(min=0, max=1, max_open=True),
    default=0.1,
    show_default=True,
    help="Share of each training target spread over all genres.",
)
@click.option(
    "--lr-schedule",
    type=click.Choice(["onecycle", "cosine", "constant"]),
    default="onecycle",
    show_default=True,
    help="onecycle: per-batch warm-up then cosine; cosine: per epoch, as the first releases.",
)
@click.option("--segment-seconds", type=float, default=6.0, show_default=True, help="Only 6 now.")
@click.option(
    "--augment/--no-augment",
    default=False,
    show_default=True,
    help="Add one pitch-shifted copy of every training track (the reference's augmentation).",
)
@click.option(
    "--spec-augment/--no-spec-augment",
    default=False,
    show_default=True,
    help="Mask random mel bands and frames of training segments (SpecAugment).",
)
@click.option(
    "--train-hop",
    type=click.FloatRange(min=0, max=6, min_open=True),
    default=1.0,
    show_default=True,
    help="Cut training tracks into overlapping 6 s windows starting every this many seconds "
    "(6: the grid, no overlap). Validation, test and the library always use the grid.",
)
@click.option(
    "--folds",
    type=FoldsParam(),
    help="Also report cross-validation: K stratified folds, or a fold file (CSV with path and "
    "fold columns, e.g. artist-grouped folds).",
)
@click.option(
    "--variants",
    multiple=True,
    type=click.Choice(["band16k", "mp3-128k", "gain-20", "gain+6"]),
    help="Genre heads with --folds: also score each fold's test tracks degraded this way "
    "(16 kHz band-limited, 128 kbps MP3, 20 dB quieter, 6 dB louder); repeat for several.",
)
@click.option(
    "--split-file",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Train, val and test track lists (three times), or one folder holding them.",
)
@click.option(
    "--pretrained",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Local ImageNet densenet121 weights to fine-tune (densenet121-a639ec97.pth).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--promote", is_flag=True, help="Promote the model and relabel the library.")
@click.option("--no-wait", is_flag=True, help="Distributed mode: enqueue and return at once.")
@json_option
@pass_context
def train(obj: Context, as_json: bool, no_wait: bool, **opts: Any) -> None:
    """Train a genre model on DATA (a folder per genre) or --from-library, and register it.

    Tracks are split 80/10/10 by track (seeded) before they are cut into 6 s segments, so no
    track is on both sides; the epoch with the lowest validation loss is kept. The defaults
    are the starter model's recipe (README: Models and accuracy). The test part
    is scored by segment and by track, beside an MFCC+LR baseline; the confusion matrix and
    loss curves are written next to the model. Features are cached: a second run over the
    same files decodes nothing. In distributed mode the job runs on the gpu queue.

    \b
    Examples:
      genrectl train ~/datasets/gtzan --folds 5
      genrectl train ~/datasets/gtzan --arch cnn --train-hop 6 --epochs 30
      genrectl train ~/datasets/gtzan --arch densenet121 --split-file ~/gtzan-split/
      genrectl train --from-library --name my-library-cnn --promote
    """
    settings = obj.ready_settings()
    spec = build_spec(settings, opts)
    quiet = obj.quiet or as_json
    if settings.embedded:
        summary = _train_embedded(obj, spec, quiet=quiet)
    else:
        summary = _train_distributed(settings, spec, wait=not no_wait)
    if opts["promote"] and not summary.get("queued"):
        from cli.ingest import label_library

        summary["labelling"] = label_library(settings, quiet=quiet)
    if as_json:
        emit_json(summary)
    else:
        _print_summary(summary)
