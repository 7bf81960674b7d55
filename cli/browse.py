"""``genrectl genres`` and ``genrectl show``: what the library holds, one track in depth."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import select

from cli.albums import album_fact, album_summary
from cli.app import Context, emit_json, json_option, pass_context
from cli.genretree import genre_tree_facts, mood_facts, tree
from cli.scope import scope_option
from db.engine import session_scope
from db.listing import TrackFilter, labelled_tracks
from db.models import Segment, Track
from db.moods import with_moods
from db.playlists import evaluate_playlist, find_track, genre_counts, list_playlists
from db.registry import promoted_model
from genrectl.errors import GenreError
from genrectl.settings import Settings

NO_MODEL = "no model is promoted: run `genrectl models list`"
_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float, maximum: float, *, width: int = 30) -> str:
    """A horizontal bar of ``width`` characters at ``maximum``, in eighths of a character."""
    if maximum <= 0 or value <= 0:
        return ""
    eighths = round(8 * width * value / maximum)
    return "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")


@click.group(invoke_without_command=True)
@json_option
@pass_context
def genres(obj: Context, as_json: bool) -> None:
    """How many featurized tracks each genre has, as a bar chart; `genres tree`: your
    genre tree.

    Counts use your own label where you gave one (`genrectl label`), else the promoted
    model's; "yours" says how many of them are your labels.

    \b
    Examples:
      genrectl genres
      genrectl genres --json | jq '.genres[] | select(.tracks > 10)'
      genrectl genres tree
    """
    if click.get_current_context().invoked_subcommand is not None:
        return
    settings = obj.ready_settings()
    with session_scope(settings) as session:
        counts = genre_counts(session)
    labelled = sum(r["tracks"] for r in counts["genres"])
    for row in counts["genres"]:
        row["share"] = round(row["tracks"] / labelled, 4) if labelled else 0.0
    if as_json:
        emit_json(counts)
        return
    from cli.render import stdout, table

    top = max((r["tracks"] for r in counts["genres"]), default=0)
    rows = [
        [
            r["genre"],
            r["tracks"],
            f"{r['share']:.0%}",
            r["user_labelled"] or "",
            bar(r["tracks"], top),
        ]
        for r in counts["genres"]
    ]
    title = f"genres by {counts['model'] or 'no model'}"
    stdout().print(table(["genre", "tracks", "share", "yours", ""], rows, title=title))
    click.echo(f"{counts['total']} featurized tracks, {counts['unlabelled']} not labelled yet.")
    if counts["model"] is None:
        click.echo(NO_MODEL)


def _segment_rows(settings: Settings, track_id: int) -> tuple[list[Any], str, str]:
    """The track's segments or windows (index, start_s) of the promoted model's first
    feature set, and the model's file and sha256; GenreError when there are none."""
    from worker.features.sets import model_feature_sets  # light: no torch

    with session_scope(settings) as session:
        model = promoted_model(session)
        track = session.get(Track, track_id)
        if model is None or track is None:
            raise GenreError(NO_MODEL)
        first = model_feature_sets(model.feature_params)[0].version
        rows = session.execute(
            select(Segment.index, Segment.start_s)
            .where(Segment.track_id == track_id, Segment.feature_version == first)
            .order_by(Segment.index)
        ).all()
        if not rows:
            raise GenreError(
                f"the track has no features for the promoted model {model.name}: run "
                "`genrectl ingest` on its folder again"
            )
        return list(rows), model.path, model.sha256


def segment_predictions(settings: Settings, track_id: int) -> list[dict[str, Any]]:
    """The promoted model's answer for each segment (or encoder window) of a track,
    computed now from its shard rows. Imports torch: only ``show`` pays for it."""
    import numpy as np

    from worker.features.sets import model_feature_sets
    from worker.inference.label import cached_model, read_rows, rows_needed
    from worker.inference.predict import score_windows
    from worker.models.device import resolve_device

    segments, model_path, model_sha = _segment_rows(settings, track_id)
    loaded = cached_model(model_path, model_sha)
    sets = model_feature_sets(loaded.feature_params)
    with session_scope(settings) as session:
        rows = read_rows(session, [track_id], sets, rows_needed(loaded, sets))
    probs = score_windows(loaded.model, rows, device=resolve_device(settings.device))
    seconds = sets[0].window_spec(max_windows=1).seconds
    out = []
    for (index, start, *_), p in zip(segments, probs, strict=True):
        top3 = [[loaded.classes[int(i)], round(float(p[i]), 4)] for i in np.argsort(-p)[:3]]
        out.append(
            {
                "index": index,
                "start_s": round(start, 2),
                "seconds": seconds,
                "genre": top3[0][0],
                "probability": top3[0][1],
                "top3": top3,
            }
        )
    return out


def track_details(
    settings: Settings, ref: str, *, segments: bool, scope: str = "track"
) -> dict[str, Any]:
    with session_scope(settings) as session:
        track = find_track(session, ref)
        (labelled,) = with_moods(
            session, labelled_tracks(session, TrackFilter(ids=(track.id,), scope=scope))
        )
        detail = {
            **labelled.to_dict(),
            "album_artist": track.album_artist,
            "album_label": album_summary(session, track),
            "codec": track.codec,
            "sample_rate": track.sample_rate,
            "channels": track.channels,
            "size": track.size,
            "content_hash": track.content_hash,
            "added_at": track.added_at.isoformat(timespec="seconds"),
            "playlists": [
                p.name
                for p in list_playlists(session)
                if any(t.id == track.id for t in evaluate_playlist(session, p))
            ],
        }
    detail["segments"], detail["segments_note"] = [], None
    if segments and track.status == "ok":
        try:
            detail["segments"] = segment_predictions(settings, track.id)
        except GenreError as exc:
            detail["segments_note"] = str(exc)
    return detail


@click.command()
@click.argument("track")
@click.option("--no-segments", is_flag=True, help="Skip the per-segment predictions (faster).")
@scope_option
@json_option
@pass_context
def show(obj: Context, track: str, no_segments: bool, scope: str | None, as_json: bool) -> None:
    """Everything about one TRACK (an id, a path, or the end of a path): tags, your label,
    the model's label with its top 3, and the model's answer for each 6 s segment.

    \b
    Examples:
      genrectl show 42
      genrectl show "~/Music/Miles Davis/So What.flac"
      genrectl show "So What.flac" --json
      genrectl show 42 --scope track     # the track's own label first
    """
    settings = obj.ready_settings()
    detail = track_details(settings, track, segments=not no_segments, scope=scope or settings.scope)
    if as_json:
        emit_json(detail)
        return
    _print_details(detail)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


FACT_KEYS = (
    "id",
    "path",
    "status",
    "error",
    "artist",
    "title",
    "album",
    "album_artist",
    "duration_s",
    "codec",
    "sample_rate",
    "channels",
    "genre_tag",
)


def _facts(detail: dict[str, Any]) -> list[list[Any]]:
    facts = [[k, detail[k]] for k in FACT_KEYS if detail[k] is not None]
    label = detail["genre"] or "not labelled"
    if detail["label_source"] == "user":
        label += f" (your label; model: {detail['model_genre'] or '-'})"
    facts.append(["genre", label])
    facts += genre_tree_facts(detail)
    if detail["model_genre"] is not None:
        facts.append(
            ["model", f"{detail['model']}: {detail['model_genre']} ({_pct(detail['confidence'])})"]
        )
        facts.append(["top 3", ", ".join(f"{g} {_pct(p)}" for g, p in detail["top3"] or [])])
    if detail["album_label"]:
        facts.append(["album label", album_fact(detail)])
    if detail["reason"]:
        facts.append(["unknown", detail["reason"]])
    if detail["music"] is not None:
        facts.append(["music", _pct(detail["music"])])
    if detail["tags"]:
        facts.append(["sounds like", ", ".join(f"{n} {_pct(p)}" for n, p in detail["tags"])])
    facts += mood_facts(detail)
    if detail["note"]:
        facts.append(["note", detail["note"]])
    if detail["playlists"]:
        facts.append(["playlists", ", ".join(detail["playlists"])])
    return facts


def _segment_cells(segment: dict[str, Any]) -> list[Any]:
    start = int(segment["start_s"])
    return [
        segment["index"],
        f"{start // 60}:{start % 60:02d}",
        segment["genre"],
        _pct(segment["probability"]),
        bar(segment["probability"], 1.0, width=20),
        ", ".join(f"{g} {_pct(p)}" for g, p in segment["top3"][1:]),
    ]


def _print_details(detail: dict[str, Any]) -> None:
    from cli.render import stdout, table

    console = stdout()
    console.print(table(["", ""], _facts(detail)))
    if detail["segments"]:
        rows = [_segment_cells(s) for s in detail["segments"]]
        columns = ["segment", "start", "genre", "p", "", "then"]
        seconds = detail["segments"][0]["seconds"]
        console.print(table(columns, rows, title=f"segments ({seconds:g} s each)"))
    elif detail["segments_note"]:
        click.echo(f"segments: {detail['segments_note']}")


genres.add_command(tree)
