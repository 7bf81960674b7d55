"""``genrectl train``: train, evaluate and register a model (in-process, or on the gpu queue).

Worker code (torch) is imported inside the command, never at module import.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from cli.app import Context, emit_json, json_option, pass_context
from cli.trainview import live_reporter, print_summary
from db.engine import session_scope
from db.models import Model
from genrectl.errors import GenreError, Interrupted
from genrectl.settings import Settings
from genrectl.stopping import signal_name, signal_of
from worker.models.encoders import HEAD_ARCHS  # light: no torch

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
    """Commit a training job and send ``genrectl.train`` its id; with ``wait``, poll the
    job until its model is registered (or it fails). The job is the cluster's: a worker
    that dies is replaced by reconcile, resuming from the last checkpoint."""
    from db.models import TrainJob, TrainStatus
    from scheduler.pipeline import TaskCall, send
    from scheduler.tasknames import TRAIN
    from scheduler.trainjobs import create_train_job

    with session_scope(settings) as session:
        job_id = create_train_job(session, spec).id
    send(settings, [TaskCall(TRAIN, {"job_id": job_id})])
    if not wait:
        return {"name": spec["name"], "train_job": job_id, "queued": True}
    while True:
        with session_scope(settings) as session:
            job = session.get(TrainJob, job_id)
            assert job is not None
            if job.status == TrainStatus.FAILED:
                raise GenreError(f"training {spec['name']!r} failed on the worker: {job.error}")
            model = session.get(Model, job.model_id) if job.model_id is not None else None
            if job.status == TrainStatus.DONE and model is not None:
                return {"model_id": model.id, "name": model.name, **_row_summary(model)}
        time.sleep(POLL_S)


def _stopped(settings: Settings, spec: dict[str, Any], signum: int) -> Interrupted:
    """What an interrupted training kept (cached features, checkpoints) and what resumes it:
    the same command under the same name."""
    how = f"interrupted ({signal_name(signum)})"
    if not settings.embedded:
        return Interrupted(
            f"{how}: training {spec['name']} goes on on the gpu queue; `genrectl models show "
            f"{spec['name']}` once it is registered",
            signum=signum,
        )
    return Interrupted(
        f"{how}: {spec['name']} is not registered; the features computed so far are cached and "
        "each finished epoch is checkpointed: the same command with "
        f"`--name {spec['name']}` resumes from there",
        signum=signum,
    )


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
    try:
        if settings.embedded:
            summary = _train_embedded(obj, spec, quiet=quiet)
        else:
            summary = _train_distributed(settings, spec, wait=not no_wait)
    except KeyboardInterrupt as exc:
        raise _stopped(settings, spec, signal_of(exc)) from None
    if opts["promote"] and settings.embedded:  # a cluster's worker relabels by itself
        from cli.labels import relabel_library

        summary["labelling"] = relabel_library(settings, quiet=quiet)
    if as_json:
        emit_json(summary)
    else:
        print_summary(summary)
