"""``genrectl tracks``: browse the library."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from cli.app import Context, emit_json, json_option, pass_context
from db.engine import session_scope
from db.models import Prediction, Track, TrackStatus
from db.registry import promoted_model

EMPTY_LABEL: dict[str, Any] = {"genre": None, "confidence": None, "top3": None, "model": None}


def promoted_labels(session: Session) -> dict[int, dict[str, Any]]:
    """track id -> the promoted model's label for it."""
    model = promoted_model(session)
    if model is None:
        return {}
    rows = session.scalars(select(Prediction).where(Prediction.model_id == model.id))
    return {
        p.track_id: {
            "genre": p.genre,
            "confidence": round(p.confidence, 4),
            "top3": p.top3,
            "model": model.name,
        }
        for p in rows
    }


def _cell(value: Any) -> Any:
    return f"{value:.0%}" if isinstance(value, float) else value


@click.group()
def tracks() -> None:
    """Browse the tracks of the library."""


@tracks.command("list")
@click.option("--failed", is_flag=True, help="Only tracks that could not be used, with the reason.")
@click.option(
    "--status",
    "status_",
    type=click.Choice([s.value for s in TrackStatus]),
    help="Only tracks with this status.",
)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many tracks.")
@json_option
@pass_context
def list_tracks(
    obj: Context, failed: bool, status_: str | None, limit: int | None, as_json: bool
) -> None:
    """List tracks: path, status, failure reason, tags.

    \b
    Examples:
      genrectl tracks list --failed
      genrectl tracks list --json --limit 10
    """
    settings = obj.ready_settings()
    query = select(Track).order_by(Track.path)
    if failed:
        status_ = TrackStatus.FAILED
    if status_:
        query = query.where(Track.status == status_)
    if limit:
        query = query.limit(limit)
    with session_scope(settings) as session:
        labels = promoted_labels(session)
        rows = [
            {
                "id": t.id,
                "path": t.path,
                "status": t.status,
                "error": t.error,
                "duration_s": None if t.duration_s is None else round(t.duration_s, 2),
                "artist": t.artist,
                "title": t.title,
                "album": t.album,
                "genre_tag": t.genre_tag,
                **labels.get(t.id, EMPTY_LABEL),
            }
            for t in session.scalars(query)
        ]
    if as_json:
        emit_json(rows)
        return
    from cli.render import stdout, table

    if failed:
        columns, keys = ["path", "status", "reason"], ["path", "status", "error"]
    else:
        columns = ["path", "status", "genre", "confidence", "artist", "title", "tag"]
        keys = ["path", "status", "genre", "confidence", "artist", "title", "genre_tag"]
    stdout().print(table(columns, [[_cell(r[k]) for k in keys] for r in rows]))
    click.echo(f"{len(rows)} tracks")
