"""What `genrectl train` shows: live progress bars, and the summary of a registered model.

Shared with `genrectl experiment`. Imported by commands only (rich, no torch).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from worker.models.encoders import HEAD_ARCHS  # light: no torch

if TYPE_CHECKING:
    from worker.training.runs import TrainReporter


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

        def warn(self, text: str) -> None:
            progress.console.print(f"warning: {text}", markup=False, highlight=False)

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


def print_summary(summary: dict[str, Any]) -> None:
    from cli.render import stdout, table

    echo = click.echo
    if summary.get("queued"):
        echo(
            f"queued training job #{summary['train_job']} for {summary['name']}: follow it "
            "with `genrectl status`"
        )
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
