"""``genrectl tags undo`` and ``tags history``: take back what ``tags write`` changed."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from cli.app import EXIT_FAILURES, Context, emit_json, json_option, pass_context
from db.engine import session_scope
from db.models import TagBatch, TagChange
from db.playlists import record_file_stamp
from db.tagjournal import (
    batch_to_undo,
    finish_undo,
    later_change,
    mark_undone,
    pending_changes,
)
from db.tagjournal import (
    history as journal_history,
)
from genrectl.errors import GenreError
from genrectl.settings import Settings


@dataclass
class UndoAction:
    """What ``tags undo`` does to one file: restored, already, refused, forced or failed."""

    id: int  # the change's id in the journal
    track_id: int | None
    path: str
    action: str
    now: str  # the values the write left, as one line
    restores: str  # the values the file had before, as one line ("(none)": absent)
    reason: str | None = None


def _line(values: list[Any] | None) -> str:
    return "; ".join(str(v) for v in values) if values else "(none)"


def _old_line(old_values: dict[str, Any]) -> str:
    for values in old_values.values():
        if values:
            return _line(values)
    empty = any(values is not None for values in old_values.values())
    return "(empty)" if empty else "(none)"


def _undo_one(session: Any, change: TagChange, *, force: bool, dry_run: bool) -> UndoAction:
    from worker.audio.tagundo import ALREADY, FORCED, REFUSED, RESTORED, RecordedChange, undo_change

    record = RecordedChange(
        path=Path(change.path),
        patch=change.patch,
        sha256_before=change.sha256_before,
        sha256_after=change.sha256_after,
        mtime_ns_before=change.mtime_ns_before,
        old_values=change.old_values,
    )
    outcome = undo_change(record, force=force, dry_run=dry_run)
    action = UndoAction(
        change.id,
        change.track_id,
        change.path,
        outcome.action,
        now=_line(change.new_values),
        restores=_old_line(change.old_values),
        reason=outcome.reason,
    )
    if outcome.action == REFUSED and outcome.reason and outcome.reason.startswith("changed"):
        later = later_change(session, change)
        if later is not None:
            action.reason = (
                f"written again by batch {later.batch_id}: undo that batch first "
                f"(`genrectl tags undo --batch {later.batch_id}`)"
            )
        else:
            action.reason = f"{outcome.reason}; --force puts the old values back anyway"
    if dry_run or outcome.action not in (RESTORED, ALREADY, FORCED):
        return action
    mark_undone(change, outcome.action)
    if outcome.stamp is not None and change.track_id is not None:
        stamp = outcome.stamp
        record_file_stamp(
            session,
            change.track_id,
            size=stamp.size,
            mtime_ns=stamp.mtime_ns,
            content_hash=stamp.sha256,
        )
    session.commit()  # the file changed: the journal must say so at once
    return action


def undo_batch(
    settings: Settings, batch_id: int | None, *, force: bool, dry_run: bool
) -> tuple[int, list[UndoAction]]:
    """Undo batch ``batch_id`` (default: the latest not undone); returns its id and what
    happened to each of its files not undone before."""
    with session_scope(settings) as session:
        batch = batch_to_undo(session, batch_id)
        changes = pending_changes(session, batch)
        if not changes:
            raise GenreError(f"batch {batch.id} is already undone: see `genrectl tags history`")
        actions = [_undo_one(session, c, force=force, dry_run=dry_run) for c in changes]
        if not dry_run:
            batch = session.get(TagBatch, batch.id) or batch
            finish_undo(session, batch)
        return batch.id, actions


@click.command("undo")
@click.option("--batch", "batch_id", type=click.IntRange(min=1), help="The batch to undo.")
@click.option("--dry-run", is_flag=True, help="Show what would be given back; change nothing.")
@click.option(
    "--force",
    is_flag=True,
    help="For files changed since: put the old values back anyway (not byte for byte).",
)
@json_option
@pass_context
def undo(obj: Context, batch_id: int | None, dry_run: bool, force: bool, as_json: bool) -> None:
    """Give the files of a `tags write` batch back exactly as they were.

    Default: the latest batch with files not given back yet (`genrectl tags history` lists
    them). A file is given back byte for byte (and its old mtime) when it is still as the
    write left it; a file changed since is refused with the reason, and the others go on:
    the batch stays "partly undone" and the next `tags undo` tries it again. Exit status 4
    when a file was refused or failed.

    \b
    Examples:
      genrectl tags undo --dry-run
      genrectl tags undo
      genrectl tags undo --batch 3 --force
    """
    settings = obj.ready_settings()
    batch, actions = undo_batch(settings, batch_id, force=force, dry_run=dry_run)
    counts = Counter(a.action for a in actions)
    summary = {
        "batch": batch,
        "dry_run": dry_run,
        **{k: counts[k] for k in ("restored", "already", "forced", "refused", "failed")},
    }
    if as_json:
        emit_json({**summary, "files": [asdict(a) for a in actions]})
    else:
        _print_undo(actions, summary, verbose=obj.verbose > 0)
    if counts["refused"] or counts["failed"]:
        sys.exit(EXIT_FAILURES)


def _print_undo(actions: list[UndoAction], summary: dict[str, Any], *, verbose: bool) -> None:
    from cli.render import stdout, table

    dry = summary["dry_run"]
    shown = [a for a in actions if verbose or dry or a.action in ("refused", "failed", "forced")]
    if shown:
        rows = [
            [
                a.path,
                f"{a.now} \u2192 {a.restores}",
                a.action + (f": {a.reason}" if a.reason else ""),
            ]
            for a in shown
        ]
        stdout().print(table(["file", "now \u2192 restores", "result"], rows))
    verb = "would give back" if dry else "gave back"
    click.echo(
        f"batch {summary['batch']}: {verb} {summary['restored']} files byte for byte; "
        f"{summary['already']} already as before, {summary['forced']} forced, "
        f"{summary['refused']} refused, {summary['failed']} failed."
    )


@click.command("history")
@click.option("--limit", type=click.IntRange(min=1), help="Only the latest N batches.")
@json_option
@pass_context
def history(obj: Context, limit: int | None, as_json: bool) -> None:
    """The `tags write` batches, latest first: what `tags undo` can take back.

    \b
    Example:
      genrectl tags history
    """
    settings = obj.ready_settings()
    with session_scope(settings) as session:
        batches = journal_history(session, limit=limit)
    if as_json:
        emit_json(
            [
                {
                    "id": b.id,
                    "created_at": b.created_at.isoformat(),
                    "field": b.field,
                    "written": b.written,
                    "undone": b.undone,
                    "undone_at": b.undone_at.isoformat() if b.undone_at else None,
                    "state": b.state,
                    "options": b.options,
                }
                for b in batches
            ]
        )
        return
    from cli.render import stdout, table

    if not batches:
        click.echo("no `tags write` has changed a file yet.")
        return
    rows = [[b.id, _utc(b.created_at), b.field, b.written, _state(b)] for b in batches]
    stdout().print(table(["batch", "time (UTC)", "field", "files", "state"], rows))


def _utc(when: datetime) -> str:
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)  # SQLite gives naive UTC
    return f"{aware.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def _state(batch: Any) -> str:
    if batch.state == "partly undone":
        return f"partly undone ({batch.undone} of {batch.written})"
    return batch.state
