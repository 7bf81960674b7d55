"""``genrectl models`` (the registry) and ``genrectl predict`` (a one-off answer)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click

from cli.app import Context, emit_json, json_option, pass_context
from db.engine import session_scope
from db.models import Model
from db.registry import ensure_starter, find_model, list_models, promote
from genrectl.errors import GenreError, ModelError
from genrectl.settings import Settings


def model_summary(model: Model) -> dict[str, Any]:
    metrics = model.metrics or {}
    return {
        "id": model.id,
        "name": model.name,
        "arch": model.arch,
        "input_size": model.input_size,
        "classes": model.classes,
        "promoted": model.promoted,
        "track_accuracy": metrics.get("track_accuracy"),
        "segment_accuracy": metrics.get("segment_accuracy"),
        "created_at": model.created_at.isoformat(timespec="seconds"),
        "path": model.path,
        "sha256": model.sha256,
    }


@click.group()
def models() -> None:
    """The model registry: list, show, promote, import, export."""


@models.command("list")
@json_option
@pass_context
def models_list(obj: Context, as_json: bool) -> None:
    """List registered models; the promoted one labels the library.

    \b
    Example:
      genrectl models list
    """
    settings = obj.ready_settings()
    with session_scope(settings) as session:
        ensure_starter(session, settings)
        rows = [model_summary(m) for m in list_models(session)]
    if as_json:
        emit_json(rows)
        return
    from cli.render import stdout, table

    def pct(value: float | None) -> str:
        return "" if value is None else f"{100 * value:.1f}%"

    stdout().print(
        table(
            ["", "name", "arch", "input", "track acc", "segment acc", "created"],
            [
                [
                    "*" if r["promoted"] else "",
                    r["name"],
                    r["arch"],
                    r["input_size"],
                    pct(r["track_accuracy"]),
                    pct(r["segment_accuracy"]),
                    r["created_at"],
                ]
                for r in rows
            ],
        )
    )


@models.command("show")
@click.argument("name")
@json_option
@pass_context
def models_show(obj: Context, name: str, as_json: bool) -> None:
    """Everything recorded about one model: training data, config, metrics.

    \b
    Example:
      genrectl models show starter-gapcnn
    """
    settings = obj.ready_settings()
    with session_scope(settings) as session:
        ensure_starter(session, settings)
        model = find_model(session, name)
        detail = {
            **model_summary(model),
            "feature_params": model.feature_params,
            "training": model.training,
            "metrics": model.metrics,
        }
    if as_json:
        emit_json(detail)
        return
    for key, value in detail.items():
        click.echo(f"{key}: {value}")


@models.command("classes")
@click.argument("search", required=False)
@click.option("--encoder", default="mn04", show_default=True, help="The pretrained encoder.")
@click.option("--map", "show_map", is_flag=True, help="Show the zero-shot map in use instead.")
@json_option
@pass_context
def models_classes(
    obj: Context, search: str | None, encoder: str, show_map: bool, as_json: bool
) -> None:
    """The encoder's own classes (AudioSet's 527 for mn04, 50 Last.fm tags for msd_fcn), or,
    with --map, which of them stand for each genre in the models' prior
    (``zeroshot-map.json`` in GENRECTL_HOME edits it).

    \b
    Examples:
      genrectl models classes music          # the classes whose name has "music"
      genrectl models classes --map
      genrectl models classes --encoder msd_fcn --map
    """
    from worker.models.encoders import class_names
    from worker.models.zeroshot import load_zeroshot_map

    settings = obj.ready_settings()
    if show_map:
        mapping = load_zeroshot_map(settings.home).get(encoder, {})
        if as_json:
            emit_json(mapping)
        else:
            for genre, names in sorted(mapping.items()):
                click.echo(f"{genre}: {', '.join(names) if names else '(none)'}")
        return
    names = [n for n in class_names(encoder) if search is None or search.casefold() in n.casefold()]
    if as_json:
        emit_json(names)
    else:
        click.echo("\n".join(names))


@models.command("promote")
@click.argument("name")
@click.option("--no-relabel", is_flag=True, help="Do not relabel the library now.")
@click.option(
    "--no-wait", is_flag=True, help="Distributed mode: leave the relabelling to the workers."
)
@pass_context
def models_promote(obj: Context, name: str, no_relabel: bool, no_wait: bool) -> None:
    """Make NAME the model that labels the library, and relabel it.

    In distributed mode the gpu workers relabel (a labelling batch); this command follows
    it, or returns at once with --no-wait.

    \b
    Examples:
      genrectl models promote my-densenet
      genrectl models promote my-densenet --no-wait   # then: genrectl jobs show ID
    """
    from cli.labels import relabel_library

    settings = obj.ready_settings()
    if no_wait and settings.embedded:
        raise click.UsageError("--no-wait needs distributed mode: set GENRECTL_BROKER_URL")
    with session_scope(settings) as session:
        model = find_model(session, name)
        promote(session, model)
    click.echo(f"promoted {name}")
    if no_relabel:
        return
    result = relabel_library(settings, quiet=obj.quiet, wait=not no_wait)
    if result.get("queued"):
        click.echo(
            f"the workers label {result['labelled']} tracks: batch #{result['batch_id']} "
            f"(`genrectl jobs show {result['batch_id']}`)"
        )
    else:
        click.echo(f"labelled {result['labelled']} tracks; {result['changed_genre']} changed genre")


@models.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Registry name (default: the file name without extension).")
@click.option("--promote", "promote_", is_flag=True, help="Promote it and relabel the library.")
@pass_context
def models_import(obj: Context, file: Path, name: str | None, promote_: bool) -> None:
    """Register a model file (checked by loading it with weights_only).

    \b
    Example:
      genrectl models import ~/Downloads/densenet-gtzan.pt --promote
    """
    settings = obj.ready_settings()
    model = register_model_file(settings, file, name=name or file.stem)
    click.echo(f"imported {model.name} ({model.arch}, {len(model.classes)} genres)")
    if promote_:
        obj_ctx = click.get_current_context()
        obj_ctx.invoke(models_promote, name=model.name, no_relabel=False, no_wait=False)


def register_model_file(
    settings: Any,
    file: Path,
    *,
    name: str,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Model:
    """Copy a model file into the data dir and add it to the registry."""
    from worker.features.sets import model_feature_sets, model_feature_version
    from worker.models.modelfile import load_model

    loaded = load_model(file)
    destination = settings.model_dir / f"{name}.pt"
    with session_scope(settings) as session:
        if session.query(Model).filter(Model.name == name).count():
            raise GenreError(f"a model named {name!r} exists: choose another --name")
    if file.resolve() != destination.resolve():
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, destination)
    with session_scope(settings) as session:
        model = Model(
            name=name,
            arch=loaded.arch,
            input_size=loaded.input_size,
            classes=loaded.classes,
            feature_version=model_feature_version(model_feature_sets(loaded.feature_params)),
            feature_params=loaded.feature_params,
            path=str(destination),
            sha256=loaded.sha256,
            training=training or loaded.training,
            metrics=metrics or loaded.metrics,
        )
        session.add(model)
    return model


@models.command("export")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--metadata",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the registry row as JSON (how the bundled starter model is made).",
)
@pass_context
def models_export(obj: Context, name: str, output: Path, metadata: Path | None) -> None:
    """Copy a registered model's file (checked against its sha256) to OUTPUT.

    \b
    Examples:
      genrectl models export starter-gapcnn -o starter.pt
      genrectl models export my-cnn -o genrectl/models/starter.pt \\
          --metadata genrectl/models/starter.json
    """
    from genrectl.files import file_sha256

    settings = obj.ready_settings()
    with session_scope(settings) as session:
        ensure_starter(session, settings)
        model = find_model(session, name)
        path, sha = Path(model.path), model.sha256
        row = {
            key: getattr(model, key)
            for key in (
                "name",
                "arch",
                "input_size",
                "classes",
                "feature_version",
                "feature_params",
                "sha256",
                "training",
                "metrics",
            )
        }
    if not path.exists() or file_sha256(path) != sha:
        raise ModelError(f"model file '{path}' is missing or changed since it was registered")
    shutil.copyfile(path, output)
    if metadata is not None:
        metadata.write_text(json.dumps(row, indent=1, sort_keys=True, default=str) + "\n")
    click.echo(f"wrote {output} (sha256 {sha})")


@click.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--model", "model_name", help="Registered model (default: the promoted one).")
@json_option
@pass_context
def predict(obj: Context, files: tuple[Path, ...], model_name: str | None, as_json: bool) -> None:
    """Predict the genre of audio files without adding them to the library.

    \b
    Examples:
      genrectl predict song.mp3
      genrectl predict *.flac --json
    """
    settings = obj.ready_settings()
    with session_scope(settings) as session:
        model = find_model(session, model_name) if model_name else ensure_starter(session, settings)
        if model is None:
            raise GenreError("no model is promoted: run `genrectl models list`")
        kwargs = {
            "model_path": model.path,
            "model_sha256": model.sha256,
            "model_name": model.name,
            "files": list(files),
        }
    results = _predict(settings, kwargs)
    if as_json:
        emit_json(results)
        return
    for r in results:
        if "error" in r:
            click.echo(f"{r['path']}: cannot decode: {r['error']}")
            continue
        top3 = ", ".join(f"{g} {p:.0%}" for g, p in r["top3"])
        line = f"{r['path']}: {r['genre']} ({r['confidence']:.0%})  [{top3}]"
        if r["reason"]:
            line += f"  {r['reason']}"
        elif r["tags"]:
            line += "  also: " + ", ".join(f"{n} {p:.0%}" for n, p in r["tags"][:3])
        click.echo(line)


def _predict(settings: Settings, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """``predict_files`` in the warm worker (started if need be: the next predict is then
    quick), else in this process."""
    from scheduler.warm import warm_client

    target = "worker.inference.label:predict_files"
    client = warm_client(settings)
    if client is not None:
        answer: list[dict[str, Any]] = client.call_or_here(target, settings, **kwargs)
        return answer
    from worker.inference.label import predict_files

    return predict_files(settings, **kwargs)
