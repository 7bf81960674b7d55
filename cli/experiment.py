"""``genrectl evaluate`` (a registered model on a labelled folder) and ``genrectl experiment``
(the reference report's table, reproduced). Both run in this process."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from cli.app import Context, emit_json, json_option, pass_context
from cli.trainview import live_reporter, pct, pct_std

_FOLDER = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command()
@click.argument("model")
@click.argument("data", type=_FOLDER)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the confusion matrix goes (default: beside the model's files).",
)
@json_option
@pass_context
def evaluate(obj: Context, model: str, data: Path, output_dir: Path | None, as_json: bool) -> None:
    """Score the registered MODEL on every track of DATA (a folder per genre).

    All of DATA is test data: use tracks the model never saw. Prints accuracy by track and
    by segment and per-genre precision, recall and F1, and writes the confusion matrix PNG.

    \b
    Example:
      genrectl evaluate my-cnn ~/datasets/holdout --json
    """
    from worker.training.experiment import evaluate_folder

    settings = obj.ready_settings()
    out = output_dir or settings.model_dir / model / "evaluations" / data.resolve().name
    report = evaluate_folder(settings, model_name=model, root=data.resolve(), output_dir=out)
    if as_json:
        emit_json(report)
        return
    _print_evaluation(report)


def _print_evaluation(report: dict[str, Any]) -> None:
    from cli.render import stdout, table

    console = stdout()
    click.echo(
        f"{report['model']} on {report['data']}: {report['n_tracks']} tracks, "
        f"{report['n_segments']} segments"
    )
    console.print(
        table(
            ["", "accuracy"],
            [
                ["tracks", pct(report["track_accuracy"])],
                ["6 s segments", pct(report["segment_accuracy"])],
            ],
        )
    )
    rows = [
        [g, pct(s["precision"]), pct(s["recall"]), pct(s["f1"]), s["support"]]
        for g, s in report["per_genre"].items()
        if s["support"]
    ]
    console.print(table(["genre", "precision", "recall", "F1", "tracks"], rows))
    for genre, count in report["skipped_genres"].items():
        click.echo(f"skipped {count} tracks of {genre!r}: the model does not know that genre")
    click.echo(f"confusion matrix: {report['confusion_png']}")


@click.group()
def experiment() -> None:
    """Experiments that reproduce the reference report."""


@experiment.command("reference-table")
@click.argument("data", type=_FOLDER)
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--folds", type=click.IntRange(min=2), help="K-fold CV instead of one split.")
@click.option("--batch-size", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--arch",
    "archs",
    multiple=True,
    type=click.Choice(["cnn", "densenet121"]),
    help="Only these networks (default: both).",
)
@click.option(
    "--pretrained",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Local ImageNet densenet121 weights, as the reference fine-tuned (default: none).",
)
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path))
@json_option
@pass_context
def reference_table(obj: Context, data: Path, as_json: bool, **opts: Any) -> None:
    """Train the reference's six configurations on DATA and print them beside its results.

    CNN (native input) and DenseNet-121 (224 x 224 input) x {whole 30 s tracks, 30 s tracks
    plus one pitch-shifted copy of each training track, 6 s segments}. Each is tested on
    one seeded 80/10/10 split by track, or with --folds K by K-fold cross-validation
    (mean ± std). Confusion matrices and table.json go to --output-dir. DenseNet trains from
    scratch unless --pretrained gives ImageNet weights.

    \b
    Example:
      genrectl experiment reference-table ~/datasets/gtzan --epochs 30 --folds 5
    """
    from worker.training.experiment import ExperimentOptions, run_reference_table

    settings = obj.ready_settings()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    output_dir = opts["output_dir"] or settings.data_dir / "experiments" / f"reference-{stamp}"
    options = ExperimentOptions(
        epochs=opts["epochs"],
        batch_size=opts["batch_size"],
        seed=opts["seed"],
        folds=opts["folds"],
        archs=tuple(opts["archs"]) or ("cnn", "densenet121"),
        pretrained=str(opts["pretrained"].resolve()) if opts["pretrained"] else None,
    )
    with live_reporter(quiet=obj.quiet or as_json) as reporter:
        result = run_reference_table(
            settings, root=data.resolve(), options=options, output_dir=output_dir, reporter=reporter
        )
    if as_json:
        emit_json(result)
        return
    _print_table(result)


def _print_table(result: dict[str, Any]) -> None:
    from cli.render import stdout, table

    rows = [
        [
            r["arch"],
            r["inputs"],
            pct_std(r["track_accuracy"]),
            pct_std(r["segment_accuracy"]),
            pct_std(r["baseline_track_accuracy"]),
            pct(r["reference_accuracy"]),
            f"{r['seconds']:.0f} s",
        ]
        for r in result["rows"]
    ]
    columns = ["network", "inputs", "tracks", "segments", "MFCC+LR tracks", "reference", "time"]
    title = f"Test accuracy on {result['data']} ({result['evaluation']})"
    stdout().print(table(columns, rows, title=title))
    click.echo(
        f"Confusion matrices and table.json: {Path(result['rows'][0]['confusion_png']).parent}"
    )
    click.echo(f"Total {result['seconds']:.0f} s.")
