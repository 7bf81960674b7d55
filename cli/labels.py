"""``genrectl label`` (the user's own genre for a track) and ``genrectl relabel``."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import click
from sqlalchemy import func, select

from cli.app import Context, emit_json, json_option, pass_context
from db.albums import refresh_albums_of
from db.engine import session_scope
from db.listing import UNKNOWN, normalize_genre
from db.models import Prediction, utcnow
from db.playlists import (
    PlaylistChange,
    find_track,
    known_genres,
    model_genres,
    refresh_playlists,
    set_user_label,
    user_labels,
)
from db.registry import promoted_model
from genrectl.errors import GenreError, Interrupted
from genrectl.settings import Settings
from genrectl.stopping import signal_name, signal_of

NO_MODEL = "no model is promoted: run `genrectl models list`"


def _check_genre(genre: str) -> str:
    clean = normalize_genre(genre)
    if not clean or len(clean) > 64 or any(ord(c) < 32 for c in clean):
        raise click.BadParameter(f"{genre!r}: a genre needs 1 to 64 printable characters")
    if clean == UNKNOWN:
        raise click.BadParameter("'unknown' is the model's word for undecided; use --clear")
    return clean


def _echo_changes(changes: list[PlaylistChange]) -> None:
    for change in changes:
        if change.problem:
            click.echo(f"  {change.problem}")
        elif change.added or change.removed:
            click.echo(
                f"  playlist {change.name!r}: +{len(change.added)} -{len(change.removed)} "
                f"({change.total} tracks)"
            )


@click.command()
@click.argument("track")
@click.argument("genre", required=False)
@click.option("--clear", is_flag=True, help="Forget your label: the model's counts again.")
@json_option
@pass_context
def label(obj: Context, track: str, genre: str | None, clear: bool, as_json: bool) -> None:
    """Give TRACK (an id, a path, or the end of a path) your own GENRE.

    Your label wins over any model in playlists, `tracks list`, `genres` and reports, and
    it is kept as training data. Playlists are refreshed at once.

    \b
    Examples:
      genrectl label 42 jazz
      genrectl label "~/Music/Nina Simone/Sinnerman.mp3" soul
      genrectl label 42 --clear
    """
    if clear == (genre is not None):
        raise click.UsageError("give a GENRE, or --clear to remove your label")
    new = None if genre is None else _check_genre(genre)
    settings = obj.ready_settings()
    with session_scope(settings) as session:
        novel = new is not None and new not in known_genres(session)
        found = find_track(session, track)
        old = set_user_label(session, found, new)
        refresh_albums_of(session, [found.id], settings)
        changes = refresh_playlists(session)
        result = {
            "id": found.id,
            "path": found.path,
            "genre": new,
            "previous_user_genre": old,
            "model_genre": model_genres(session).get(found.id),
            "new_genre": novel,
            "playlists": [c.to_dict() for c in changes],
        }
    if as_json:
        emit_json(result)
        return
    what = f"your label {new!r}" if new else "no label of yours (the model's counts)"
    click.echo(f"track {found.id} {found.path}: {what}; model says {result['model_genre'] or '-'}")
    if novel:
        click.echo(f"  note: no model knows {new!r} yet; it counts now and is training data.")
    _echo_changes(changes)


def relabel_library(
    settings: Settings, *, quiet: bool, relabel: bool = False, wait: bool = True
) -> dict[str, Any]:
    """Label the library with the promoted model (every track with ``relabel``, else the
    ones it has not labelled) in a labelling batch: run here in embedded mode, by the gpu
    workers in distributed mode (followed with a progress bar unless not ``wait``)."""
    from cli.ingest import warn
    from cli.render import batch_progress
    from db.registry import ensure_starter
    from scheduler.labelling import label_library

    with session_scope(settings) as session:
        model = ensure_starter(session, settings)
        model_id = None if model is None else model.id
    if model_id is None:
        return {"model": None, "labelled": 0, "note": NO_MODEL}
    with batch_progress(quiet=quiet or not wait) as bar:
        done = label_library(
            settings,
            model_id,
            relabel=relabel,
            wait=wait,
            on_progress=bar,
            notify=warn,
            warm=True,
        )
    for warning in damaged_warnings(settings, done.batch_id):
        warn(warning)
    result: dict[str, Any] = {"model": done.model, "labelled": done.labelled}
    if done.changed_genre is None:
        return {**result, "batch_id": done.batch_id, "queued": True}
    return {**result, "changed_genre": done.changed_genre}


def damaged_warnings(settings: Settings, batch_id: int) -> list[str]:
    """One line per damaged shard that kept some of the batch's tracks from a label."""
    from sqlalchemy import func, select

    from db.models import Job, JobKind, JobStatus, Segment, Shard
    from genrectl.errors import REPAIR_HINT, ShardError

    failed = select(Job.track_id).where(
        Job.batch_id == batch_id, Job.kind == JobKind.LABEL, Job.status == JobStatus.FAILED
    )
    with session_scope(settings) as session:
        rows = session.execute(
            select(Shard.path, Shard.damaged, func.count(Segment.track_id.distinct()))
            .join(Segment, Segment.shard_id == Shard.id)
            .where(Shard.damaged.is_not(None), Segment.track_id.in_(failed))
            .group_by(Shard.path, Shard.damaged)
            .order_by(Shard.path)
        ).all()
    return [
        f"skipped {ShardError(path, why or 'damaged')} ({n} tracks not labelled); {REPAIR_HINT}"
        for path, why, n in rows
    ]


@click.command()
@json_option
@pass_context
def relabel(obj: Context, as_json: bool) -> None:
    """Label every featurized track again with the promoted model and say what changed.

    Use it after `genrectl models promote` with --no-relabel, or after changing
    GENRECTL_UNKNOWN_THRESHOLD. Your own labels are kept; playlists are refreshed.

    \b
    Examples:
      genrectl relabel
      genrectl relabel --json | jq .changed_genre
    """
    settings = obj.ready_settings()
    with session_scope(settings) as session:
        before = model_genres(session)
    started = utcnow()
    try:
        result = relabel_library(settings, quiet=obj.quiet or as_json, relabel=True)
    except KeyboardInterrupt as exc:
        signum = signal_of(exc)
        raise Interrupted(
            f"interrupted ({signal_name(signum)}): {_relabelled_since(settings, started)} "
            "tracks relabelled and kept; `genrectl relabel` labels them all again (and "
            "refreshes the playlists)",
            signum=signum,
        ) from None
    if result["model"] is None:
        raise GenreError(NO_MODEL)
    with session_scope(settings) as session:
        after = model_genres(session)
        kept = len(user_labels(session))
        changes = refresh_playlists(session, model=promoted_model(session))
    moves = Counter(
        (before[t], genre) for t, genre in after.items() if t in before and before[t] != genre
    )
    report: dict[str, Any] = {
        "model": result["model"],
        "labelled": result["labelled"],
        "changed_genre": sum(moves.values()),
        "changes": [{"from": a, "to": b, "tracks": n} for (a, b), n in moves.most_common()],
        "user_labels_kept": kept,
        "playlists": [c.to_dict() for c in changes],
    }
    if as_json:
        emit_json(report)
        return
    click.echo(
        f"Relabelled {report['labelled']} tracks with {report['model']}: "
        f"{report['changed_genre']} changed genre; {kept} labels of yours kept."
    )
    for move in report["changes"][:10]:
        click.echo(f"  {move['from']} -> {move['to']}: {move['tracks']}")
    _echo_changes(changes)


def _relabelled_since(settings: Settings, started: datetime) -> int:
    """Labels the promoted model wrote since ``started`` (each shard's are committed whole)."""
    with session_scope(settings) as session:
        model = promoted_model(session)
        if model is None:
            return 0
        count = session.scalar(
            select(func.count())
            .select_from(Prediction)
            .where(Prediction.model_id == model.id, Prediction.created_at >= started)
        )
    return int(count or 0)
