"""``genrectl report``: the library and its model on one static HTML page."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import click
from sqlalchemy import func, select

from cli.app import Context, emit_json, json_option, pass_context
from db.engine import session_scope
from db.listing import USER, LabelledTrack, TrackFilter, labelled_tracks
from db.models import Model, Track, TrackStatus
from db.playlists import evaluate_playlist, genre_counts, list_playlists
from db.registry import promoted_model
from genrectl.settings import Settings

CONFUSION_KEYS = (
    ("track_confusion", "by track"),
    ("confusion", ""),
    ("segment_confusion", "by 6 s segment"),
)


def model_facts(model: Model | None) -> dict[str, Any] | None:
    if model is None:
        return None
    return {
        "name": model.name,
        "arch": model.arch,
        "classes": list(model.classes),
        "created_at": model.created_at.isoformat(timespec="seconds"),
        "metrics": dict(model.metrics or {}),
    }


def report_data(settings: Settings, *, lowest: int) -> dict[str, Any]:
    """Everything the page shows, as plain values."""
    with session_scope(settings) as session:
        model = promoted_model(session)
        tracks = labelled_tracks(session, TrackFilter(statuses=(TrackStatus.OK,)))
        by_status = dict(
            session.execute(select(Track.status, func.count()).group_by(Track.status)).all()
        )
        playlists = [(p.name, len(evaluate_playlist(session, p))) for p in list_playlists(session)]
        data = {"model": model_facts(model), "genres": genre_counts(session)}
    model_labelled = [t for t in tracks if t.model_genre is not None]
    unsure = sorted(
        (t for t in model_labelled if t.source != USER), key=lambda t: t.confidence or 0
    )
    return {
        **data,
        "status": {str(k): v for k, v in by_status.items()},
        "confidences": [t.confidence or 0.0 for t in model_labelled],
        "threshold": settings.unknown_threshold,
        "lowest": unsure[:lowest],
        "user_labels": sum(1 for t in tracks if t.source == USER),
        "playlists": playlists,
    }


def confusion_of(model: dict[str, Any]) -> tuple[list[list[int]], list[str], str] | None:
    """The model's recorded confusion matrix (rows true), if it recorded a usable one."""
    metrics = model["metrics"]
    classes = metrics.get("classes") or model["classes"]
    for key, how in CONFUSION_KEYS:
        matrix = metrics.get(key)
        if (
            isinstance(matrix, list)
            and len(matrix) == len(classes) > 0
            and all(isinstance(r, list) and len(r) == len(classes) for r in matrix)
        ):
            return [[int(v) for v in row] for row in matrix], [str(c) for c in classes], how
    return None


def _summary(data: dict[str, Any]) -> str:
    from cli.reportpage import cards

    status = data["status"]
    genres = data["genres"]
    return cards(
        [
            ("tracks", sum(status.values())),
            ("featurized", status.get(TrackStatus.OK, 0)),
            ("failed", status.get(TrackStatus.FAILED, 0)),
            ("genres", sum(1 for g in genres["genres"] if g["genre"] != "unknown")),
            ("your labels", data["user_labels"]),
            ("playlists", len(data["playlists"])),
        ]
    )


def _genres(data: dict[str, Any]) -> str:
    from cli.reportpage import genre_chart, note, table

    rows = data["genres"]["genres"]
    if not rows:
        return "<h2>Genres</h2>" + note("No track is labelled yet: run `genrectl ingest DIR`.")
    total = sum(r["tracks"] for r in rows)
    cells = [
        [r["genre"], r["tracks"], f"{r['tracks'] / total:.0%}", r["user_labelled"]] for r in rows
    ]
    return (
        "<h2>Genres</h2>"
        + genre_chart(rows)
        + table(["genre", "tracks", "share", "your labels"], cells, numeric=frozenset({1, 2, 3}))
    )


def _confidence(data: dict[str, Any]) -> str:
    from cli.reportpage import confidence_chart, note

    if not data["confidences"]:
        return "<h2>Confidence</h2>" + note("The promoted model has labelled no track yet.")
    return "<h2>Confidence</h2>" + confidence_chart(data["confidences"], data["threshold"])


def _out_of_fold(metrics: dict[str, Any]) -> str:
    """The cross-validated scores of a head model's recipe, side by side with the zero-shot
    model and the MFCC baseline on the same folds, per source folder."""
    from cli.reportpage import pct, table

    cv = metrics.get("cross_validation")
    if not isinstance(cv, dict) or not isinstance(cv.get("scores"), dict):
        return ""
    scores = cv["scores"]
    if "model" not in scores:
        return ""
    sources = sorted(scores["model"].get("by_source", {}))
    rows = []
    for name, label in (
        ("model", "this model's recipe"),
        ("zeroshot", "zero-shot"),
        ("baseline", "MFCC baseline"),
    ):
        score = scores.get(name)
        if isinstance(score, dict):
            by_source = score.get("by_source", {})
            rows.append(
                [label, pct(score.get("accuracy"))]
                + [pct(by_source.get(s, {}).get("accuracy")) for s in sources]
                + [pct(score.get("macro_recall"))]
            )
    columns = ["out of fold", "all tracks", *sources, "per-genre mean"]
    return f"<h3>Out of fold: {escape(str(cv.get('fold_source', '')))}</h3>" + table(
        columns, rows, numeric=frozenset(range(1, len(columns)))
    )


def _model(data: dict[str, Any]) -> str:
    from cli.reportpage import confusion_chart, note, pct, table

    model = data["model"]
    if model is None:
        return "<h2>Model</h2>" + note("No model is promoted: run `genrectl models list`.")
    metrics = model["metrics"]
    baseline = metrics.get("baseline") if isinstance(metrics.get("baseline"), dict) else {}
    facts = [
        ["model", f"{model['name']} ({model['arch']}, {len(model['classes'])} genres)"],
        ["created", model["created_at"]],
        ["track accuracy", pct(metrics.get("track_accuracy"))],
        ["segment accuracy", pct(metrics.get("segment_accuracy"))],
        ["baseline track accuracy", pct((baseline or {}).get("track_accuracy"))],
        ["tracks scored", metrics.get("n_tracks", "–")],
        ["evaluated on", metrics.get("evaluated_on", "–")],
    ]
    html = "<h2>Model</h2>" + table(["", ""], facts) + _out_of_fold(metrics)
    confusion = confusion_of(model)
    if confusion is None:
        html += note("The model recorded no confusion matrix.")
    else:
        matrix, classes, how = confusion
        html += f"<h3>Confusion matrix {escape(how)}</h3>" + confusion_chart(matrix, classes)
    per_genre = metrics.get("per_genre")
    if isinstance(per_genre, dict) and per_genre:
        rows = [
            [g, pct(s.get("precision")), pct(s.get("recall")), pct(s.get("f1")), s.get("support")]
            for g, s in per_genre.items()
            if isinstance(s, dict)
        ]
        html += "<h3>Per genre</h3>" + table(
            ["genre", "precision", "recall", "F1", "support"], rows, numeric=frozenset({1, 2, 3, 4})
        )
    return html


def _lowest(data: dict[str, Any]) -> str:
    from cli.reportpage import Raw, note, table

    tracks: list[LabelledTrack] = data["lowest"]
    if not tracks:
        return "<h2>Least sure</h2>" + note("Nothing to review.")
    rows = [
        [
            t.id,
            Raw(f'{escape(t.display_title)}<div class="path">{escape(t.path)}</div>'),
            t.artist,
            t.model_genre,
            f"{t.confidence or 0:.0%}",
            ", ".join(f"{g} {p:.0%}" for g, p in t.top3 or []),
        ]
        for t in tracks
    ]
    headers = ["id", "title", "artist", "label", "confidence", "top 3"]
    hint = "<p>Correct any of them with <code>genrectl label ID GENRE</code>.</p>"
    return "<h2>Least sure</h2>" + hint + table(headers, rows, numeric=frozenset({0, 4}))


def _playlists(data: dict[str, Any]) -> str:
    from cli.reportpage import table

    if not data["playlists"]:
        return ""
    return "<h2>Playlists</h2>" + table(
        ["name", "tracks"], data["playlists"], numeric=frozenset({1})
    )


def render_report(data: dict[str, Any]) -> str:
    from cli.reportpage import page

    model = data["model"]["name"] if data["model"] else "no model"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        ("summary", _summary(data)),
        ("genres", _genres(data)),
        ("confidence", _confidence(data)),
        ("model", _model(data)),
        ("lowest", _lowest(data)),
        ("playlists", _playlists(data)),
    ]
    return page("genrectl library report", f"labelled by {model}; made {when}", sections)


@click.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default="genrectl-report.html",
    show_default=True,
)
@click.option(
    "--lowest",
    type=click.IntRange(1, 1000),
    default=25,
    show_default=True,
    help="How many of the least sure tracks to list.",
)
@json_option
@pass_context
def report(obj: Context, output: Path, lowest: int, as_json: bool) -> None:
    """Write one static HTML page: genre distribution, confidence histogram, the promoted
    model's metrics and confusion matrix, and the tracks the model is least sure of.

    The page needs no server and loads nothing from the network: open it in any browser.

    \b
    Examples:
      genrectl report -o report.html
      xdg-open report.html
    """
    from cli.m3u import write_text_atomic

    settings = obj.ready_settings()
    data = report_data(settings, lowest=lowest)
    path = Path(os.path.abspath(os.path.expanduser(output)))
    write_text_atomic(path, render_report(data))
    summary = {
        "path": str(path),
        "tracks": sum(data["status"].values()),
        "model": data["model"]["name"] if data["model"] else None,
        "genres": len(data["genres"]["genres"]),
        "lowest": len(data["lowest"]),
    }
    if as_json:
        emit_json(summary)
        return
    click.echo(f"wrote {path}")
