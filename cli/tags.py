"""``genrectl tags write``: put the model's genre into the files' own tags (opt-in)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from cli.app import EXIT_FAILURES, Context, emit_json, json_option, pass_context
from db.engine import session_scope
from db.listing import UNKNOWN, LabelledTrack, TrackFilter, labelled_tracks
from db.models import Track, TrackStatus
from db.playlists import record_file_stamp
from db.registry import promoted_model
from genrectl.errors import GenreError
from genrectl.settings import Settings

FIELDS = ("genre", "grouping")


@dataclass
class TagAction:
    """What ``tags write`` does to one file: ``write``, ``unchanged``, ``skip`` or ``failed``."""

    id: int
    path: str
    action: str
    value: str | None = None
    current: str | None = None
    reason: str | None = None
    kind: str | None = None  # why skipped, without values: for the summary

    def skip(self, kind: str, reason: str) -> TagAction:
        self.action, self.kind, self.reason = "skip", kind, reason
        return self


def _refusal(track: LabelledTrack, min_confidence: float | None) -> tuple[str, str] | None:
    """Why the model's label of ``track`` must not go into its file: (kind, reason)."""
    if track.model_genre is None:
        return "not labelled", "not labelled by the promoted model"
    if track.user_genre is not None and track.user_genre != track.model_genre:
        return "your label differs", (
            f"your label {track.user_genre!r} differs from the model's {track.model_genre!r}"
        )
    if track.model_genre == UNKNOWN:
        return "unknown", "the model could not decide (unknown)"
    if min_confidence is not None and (track.confidence or 0.0) < min_confidence:
        return "below --min-confidence", f"confidence {track.confidence:.0%} < {min_confidence:.0%}"
    return None


def _plan_one(
    track: LabelledTrack, stamp: tuple[int, int], field: str, options: dict[str, Any]
) -> TagAction:
    from worker.audio.tagwrite import TagWriteError, read_field

    action = TagAction(track.id, track.path, "write", value=track.model_genre)
    refusal = _refusal(track, options["min_confidence"])
    if refusal:
        return action.skip(*refusal)
    path = Path(track.path)
    try:
        info = path.stat()
    except OSError:
        return action.skip("not found", "file not found: run `genrectl ingest` on its folder")
    if (info.st_size, info.st_mtime_ns) != stamp:
        return action.skip("changed on disk", "changed since the last ingest: ingest it first")
    try:
        action.current = read_field(path, field)
    except TagWriteError as exc:
        return action.skip("unreadable", exc.reason)
    value = track.model_genre or ""
    if action.current is not None and action.current.casefold() == value.casefold():
        action.action = "unchanged"
    elif action.current is not None and not options["overwrite"]:
        return action.skip(
            f"has another {field}", f"has {field} {action.current!r} (--overwrite replaces it)"
        )
    return action


def tracks_to_tag(
    settings: Settings, genres: tuple[str, ...]
) -> tuple[list[LabelledTrack], dict[int, tuple[int, int]]]:
    """Featurized tracks (of ``genres``) with their labels, and each one's (size, mtime_ns)."""
    with session_scope(settings) as session:
        if promoted_model(session) is None:
            raise GenreError("no model is promoted: run `genrectl models list`")
        found = labelled_tracks(session, TrackFilter(genres=genres, statuses=(TrackStatus.OK,)))
        stamps = {
            tid: (size, mtime)
            for tid, size, mtime in session.execute(select(Track.id, Track.size, Track.mtime_ns))
        }
    return found, stamps


def plan_tag_writes(
    found: list[LabelledTrack],
    stamps: dict[int, tuple[int, int]],
    options: dict[str, Any],
    on_progress: Callable[[int, int], None],
) -> list[TagAction]:
    """Read each labelled file's current tag and decide what to do with it."""
    plan = []
    for done, track in enumerate(found, 1):
        plan.append(_plan_one(track, stamps[track.id], options["field"], options))
        on_progress(done, len(found))
    return plan


def apply_tag_writes(
    settings: Settings, plan: list[TagAction], field: str, on_progress: Callable[[int, int], None]
) -> None:
    """Write the planned tags; record each file's new size, mtime and hash at once."""
    from worker.audio.tagwrite import TagWriteError, write_field

    todo = [a for a in plan if a.action == "write"]
    with session_scope(settings) as session:
        for done, action in enumerate(todo, 1):
            try:
                stamp = write_field(Path(action.path), field, action.value or "")
            except TagWriteError as exc:
                action.action, action.reason = "failed", exc.reason
            else:
                record_file_stamp(
                    session,
                    action.id,
                    size=stamp.size,
                    mtime_ns=stamp.mtime_ns,
                    content_hash=stamp.sha256,
                )
                session.commit()  # the file changed: its new stamp must not wait for the rest
            on_progress(done, len(todo))


@click.group()
def tags() -> None:
    """Write genre labels into your files' own tags (only when asked).

    \b
    Example:
      genrectl tags write --dry-run
    """


@tags.command("write")
@click.option("--dry-run", is_flag=True, help="Show what would be written; change nothing.")
@click.option("--field", type=click.Choice(FIELDS), default="genre", show_default=True)
@click.option("--min-confidence", type=click.FloatRange(0, 1), help="Only labels this sure.")
@click.option("--genre", "genres", multiple=True, help="Only tracks with this label (repeat).")
@click.option("--overwrite", is_flag=True, help="Replace a different value already in the file.")
@json_option
@pass_context
def write(obj: Context, **options: Any) -> None:
    """Write the promoted model's genre into the files' genre (or grouping) tag.

    Only metadata changes: the audio data stays byte for byte. Each file is rewritten on a
    copy renamed into place. Skipped: tracks the model calls unknown or is less sure of than
    --min-confidence, tracks where your own label differs from the model's, files changed
    since the last ingest, and files whose tag holds another value (unless --overwrite).
    The library records each written file's new size and mtime, so ingest does not read it
    again. The library keeps the genre tag it read at ingest (training data stays yours).

    \b
    Examples:
      genrectl tags write --dry-run
      genrectl tags write --field grouping --min-confidence 0.6
      genrectl tags write --genre jazz --overwrite
    """
    from cli.render import count_progress

    settings = obj.ready_settings()
    quiet = obj.quiet or options["as_json"]
    found, stamps = tracks_to_tag(settings, options["genres"])
    with count_progress("Reading tags", len(found), quiet=quiet) as bar:
        plan = plan_tag_writes(found, stamps, options, bar)
    if not options["dry_run"]:
        writes = sum(1 for a in plan if a.action == "write")
        with count_progress("Writing tags", writes, quiet=quiet) as bar:
            apply_tag_writes(settings, plan, options["field"], bar)
    summary = _summary(plan, options)
    if options["as_json"]:
        emit_json({**summary, "tracks": [asdict(a) for a in plan]})
    else:
        _print_plan(plan, summary, verbose=obj.verbose > 0)
    if summary["failed"]:
        sys.exit(EXIT_FAILURES)


def _summary(plan: list[TagAction], options: dict[str, Any]) -> dict[str, Any]:
    counts = Counter(a.action for a in plan)
    return {
        "field": options["field"],
        "dry_run": options["dry_run"],
        "would_write" if options["dry_run"] else "written": counts["write"],
        "unchanged": counts["unchanged"],
        "skipped": counts["skip"],
        "failed": counts["failed"],
        "skip_reasons": dict(Counter(a.kind for a in plan if a.action == "skip")),
    }


def _print_plan(plan: list[TagAction], summary: dict[str, Any], *, verbose: bool) -> None:
    from cli.render import stdout, table

    shown = [a for a in plan if a.action in ("write", "failed") or (verbose and a.reason)]
    if shown:
        rows = [
            [a.path, a.current or "", a.value if a.action == "write" else a.reason] for a in shown
        ]
        stdout().print(table(["file", "now", "writes" if summary["dry_run"] else "result"], rows))
    verb = "would write" if summary["dry_run"] else "wrote"
    count = summary.get("would_write", summary.get("written"))
    click.echo(
        f"{verb} {summary['field']} in {count} files; {summary['unchanged']} already had it, "
        f"{summary['skipped']} skipped, {summary['failed']} failed."
    )
    for reason, n in sorted(summary["skip_reasons"].items(), key=lambda kv: -kv[1]):
        click.echo(f"  skipped {n}: {reason}")
    if summary["skipped"] and not verbose:
        click.echo("  (-v lists every skipped file with its reason)")
