"""``genrectl tags write``: put the model's genre into the files' own tags (opt-in)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from cli.app import EXIT_FAILURES, Context, emit_json, json_option, pass_context
from cli.scope import scope_option
from cli.tagundo import history, undo
from db.engine import session_scope
from db.listing import UNKNOWN, LabelledTrack, TrackFilter, labelled_tracks
from db.models import Prediction, TagBatch, TagChange, Track, TrackStatus
from db.playlists import record_file_stamp
from db.registry import promoted_model
from db.tagjournal import forget_change, record_change, start_batch
from genrectl.errors import GenreError
from genrectl.genres import MAX_GENRES, genres_to_write
from genrectl.settings import Settings

if TYPE_CHECKING:
    from genrectl.taxonomy import Taxonomy
    from worker.audio.tagundo import WriteRecord
    from worker.audio.tagwrite import FileStamp

FIELDS = ("genre", "grouping", "mood")


@dataclass
class TagAction:
    """What ``tags write`` does to one file: ``write``, ``unchanged``, ``skip`` or ``failed``."""

    id: int
    path: str
    action: str
    value: str | None = None  # the values to write, as one line ("jazz; blues")
    current: str | None = None  # the file's values now, as one line; None when empty
    reason: str | None = None
    kind: str | None = None  # why skipped, without values: for the summary
    values: list[str] = field(default_factory=list)  # the values to write
    current_values: list[str] = field(default_factory=list)  # the file's values now

    def skip(self, kind: str, reason: str) -> TagAction:
        self.action, self.kind, self.reason = "skip", kind, reason
        return self


def _refusal(
    track: LabelledTrack, min_confidence: float | None, field: str
) -> tuple[str, str] | None:
    """Why the model's label of ``track`` must not go into its file: (kind, reason)."""
    if track.model_genre is None:
        return "not labelled", "not labelled by the promoted model"
    if field == "mood":  # the encoders' moods: your genre label and the genre's doubt aside
        return None
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
    track: LabelledTrack,
    stamp: tuple[int, int],
    values: list[str],
    options: dict[str, Any],
    same: Callable[[str], str],
) -> TagAction:
    from worker.audio.tagwrite import TagWriteError, read_values

    action = TagAction(track.id, track.path, "write", value="; ".join(values) or None)
    action.values = values
    refusal = _refusal(track, options["min_confidence"], options["field"])
    if refusal:
        return action.skip(*refusal)
    if not values:
        return action.skip("no mood", "no mood reaches its threshold")
    path = Path(track.path)
    try:
        info = path.stat()
    except OSError:
        return action.skip("not found", "file not found: run `genrectl ingest` on its folder")
    if (info.st_size, info.st_mtime_ns) != stamp:
        return action.skip("changed on disk", "changed since the last ingest: ingest it first")
    try:
        action.current_values = read_values(path, options["field"])
    except TagWriteError as exc:
        return action.skip("unreadable", exc.reason)
    action.current = "; ".join(action.current_values) or None
    if action.current is None:
        return action
    if [same(v) for v in action.current_values] == [same(v) for v in values]:
        action.action = "unchanged"
    elif options["only_empty"]:
        return action.skip(
            f"{options['field']} not empty", f"has {action.current!r} (--only-empty)"
        )
    elif not options["overwrite"]:
        return action.skip(
            f"has another {options['field']}",
            f"has {options['field']} {action.current!r} (--overwrite replaces it)",
        )
    return action


def tracks_to_tag(
    settings: Settings, genres: tuple[str, ...], scope: str = "track"
) -> tuple[list[LabelledTrack], dict[int, tuple[int, int]]]:
    """Featurized tracks (of ``genres``) with their labels, and each one's (size, mtime_ns).
    At album scope the model's label of a track is its album's (db.albums) unless the track
    clearly disagrees: what is written and what --min-confidence tests."""
    with session_scope(settings) as session:
        if promoted_model(session) is None:
            raise GenreError("no model is promoted: run `genrectl models list`")
        rule = TrackFilter(genres=genres, statuses=(TrackStatus.OK,), scope=scope)
        found = labelled_tracks(session, rule)
        if scope == "album":
            found = [
                replace(t, model_genre=t.album_genre, confidence=t.album_confidence)
                if t.album_genre
                else t
                for t in found
            ]
        stamps = {
            tid: (size, mtime)
            for tid, size, mtime in session.execute(select(Track.id, Track.size, Track.mtime_ns))
        }
    return found, stamps


def moods_to_write(settings: Settings, found: list[LabelledTrack]) -> dict[int, list[str]]:
    """Per track: its moods, strongest first (``db.moods.track_moods``); [] for none."""
    from db.moods import mood_scores
    from genrectl.moods import track_mood_names

    with session_scope(settings) as session:
        scores = mood_scores(session, [t.id for t in found])
    return {t.id: track_mood_names(scores.get(t.id, {})) for t in found}


def values_to_write(
    settings: Settings, found: list[LabelledTrack], max_genres: int
) -> dict[int, list[str]]:
    """Per track: its label, then (``max_genres`` > 1) the secondary genres of the promoted
    model that pass their thresholds (the model's ``metrics["class_thresholds"]`` when it
    has them, else the unknown threshold): see genrectl/genres.py."""
    labelled = {t.id: t.model_genre for t in found if t.model_genre and t.model_genre != UNKNOWN}
    out = {tid: [genre] for tid, genre in labelled.items()}
    if max_genres == 1 or not labelled:
        return out
    with session_scope(settings) as session:
        model = promoted_model(session)
        if model is None:
            raise GenreError("no model is promoted: run `genrectl models list`")
        classes = list(model.classes)
        thresholds = dict((model.metrics or {}).get("class_thresholds") or {})
        ids = list(labelled)
        for start in range(0, len(ids), 500):  # the probabilities of these tracks only
            rows = session.execute(
                select(Prediction.track_id, Prediction.probabilities).where(
                    Prediction.model_id == model.id,
                    Prediction.track_id.in_(ids[start : start + 500]),
                )
            )
            for tid, probs in rows:
                if probs is not None and len(probs) == len(classes):
                    out[tid] = genres_to_write(
                        labelled[tid],
                        probs,
                        classes,
                        thresholds=thresholds,
                        default_threshold=settings.unknown_threshold,
                        max_genres=max_genres,
                    )
    return out


def _taxonomy(settings: Settings) -> Taxonomy:
    from db.genretree import session_taxonomy

    with session_scope(settings) as session:
        return session_taxonomy(session)


def genre_names(taxonomy: Taxonomy, values: dict[int, list[str]]) -> dict[int, list[str]]:
    """The genres to write as your genre tree names them ("hiphop" and "Hip hop music" are
    both "Hip hop"), each once, in order: a tag holds a genre, not a model's class."""
    return {
        tid: list(dict.fromkeys(taxonomy.canonical(g) for g in genres))
        for tid, genres in values.items()
    }


def plan_tag_writes(
    found: list[LabelledTrack],
    stamps: dict[int, tuple[int, int]],
    values: dict[int, list[str]],
    options: dict[str, Any],
    on_progress: Callable[[int, int], None],
    same: Callable[[str], str] = str.casefold,
) -> list[TagAction]:
    """Read each labelled file's current tag and decide what to do with it: a tag whose
    values are ``same`` as the ones to write is left unchanged ("Hip-Hop" already says
    "Hip hop" when ``same`` maps both to one genre)."""
    plan = []
    for done, track in enumerate(found, 1):
        value = values.get(track.id, [])
        plan.append(_plan_one(track, stamps[track.id], value, options, same))
        on_progress(done, len(found))
    return plan


def _journal_options(options: dict[str, Any]) -> dict[str, Any]:
    keys = ("max_genres", "only_empty", "overwrite", "min_confidence", "genres", "scope")
    return {k: list(options[k]) if k == "genres" else options[k] for k in keys}


class _Journal:
    """The journal batch of one ``tags write`` run, started at its first change."""

    def __init__(self, session: Session, options: dict[str, Any]) -> None:
        self.session, self.options = session, options
        self.batch: TagBatch | None = None
        self.staged: list[tuple[TagChange, WriteRecord]] = []

    def record(self, action: TagAction, record: WriteRecord) -> None:
        """The file is ready to replace the old one: record the change first."""
        if self.batch is None:
            self.batch = start_batch(
                self.session, self.options["field"], _journal_options(self.options)
            )
        change = record_change(
            self.session,
            self.batch,
            track_id=action.id,
            path=action.path,
            old_values=record.old_values,
            new_values=record.new_values,
            sha256_before=record.before.sha256,
            sha256_after=record.after.sha256,
            size_before=record.before.size,
            mtime_ns_before=record.before.mtime_ns,
            size_after=record.after.size,
            mtime_ns_after=record.after.mtime_ns,
            patch=record.patch,
        )
        _stamp(self.session, action.id, record.after)
        self.session.commit()  # the journal holds the change before the file has it
        self.staged.append((change, record))

    def forget(self, action: TagAction) -> None:
        """Recorded, but the file could not be replaced: it is as it was."""
        for change, record in self.staged:
            if change.track_id == action.id:
                forget_change(self.session, change)
                _stamp(self.session, action.id, record.before)
        self.session.commit()


def apply_tag_writes(
    settings: Settings,
    plan: list[TagAction],
    options: dict[str, Any],
    on_progress: Callable[[int, int], None],
) -> int | None:
    """Write the planned tags, each change recorded in one journal batch before the file is
    replaced, and each file's new size, mtime and hash recorded at once. Returns the batch's
    id, None when no file changed."""
    from worker.audio.tagundo import write_reversibly
    from worker.audio.tagwrite import TagWriteError

    todo = [a for a in plan if a.action == "write"]
    with session_scope(settings) as session:
        journal = _Journal(session, options)
        for done, action in enumerate(todo, 1):
            try:
                write_reversibly(
                    Path(action.path),
                    options["field"],
                    action.values,
                    partial(journal.record, action),
                )
            except TagWriteError as exc:
                action.action, action.reason = "failed", exc.reason
                journal.forget(action)
            on_progress(done, len(todo))
        if journal.batch is None or journal.batch.written == 0:
            if journal.batch is not None:
                session.delete(journal.batch)
            return None
        return journal.batch.id


def _stamp(session: Session, track_id: int, stamp: FileStamp) -> None:
    record_file_stamp(
        session, track_id, size=stamp.size, mtime_ns=stamp.mtime_ns, content_hash=stamp.sha256
    )


@click.group()
def tags() -> None:
    """Write genre labels into your files' own tags (only when asked), and take them back.

    \b
    Examples:
      genrectl tags write --dry-run
      genrectl tags history
      genrectl tags undo
    """


@tags.command("write")
@click.option("--dry-run", is_flag=True, help="Show old -> new per file; change nothing.")
@click.option("--field", type=click.Choice(FIELDS), default="genre", show_default=True)
@click.option("--min-confidence", type=click.FloatRange(0, 1), help="Only labels this sure.")
@click.option("--genre", "genres", multiple=True, help="Only tracks with this label (repeat).")
@click.option("--overwrite", is_flag=True, help="Replace a different value already in the file.")
@click.option("--only-empty", is_flag=True, help="Only files whose field is absent or empty.")
@click.option(
    "--max-genres",
    type=click.IntRange(1, MAX_GENRES),
    default=1,
    show_default=True,
    help="The label plus secondary genres above their thresholds, this many at most.",
)
@scope_option
@json_option
@pass_context
def write(obj: Context, **options: Any) -> None:
    """Write the promoted model's genre into the files' genre (or grouping) tag.

    Only metadata changes: the audio data stays byte for byte. Each file is rewritten on a
    copy renamed into place, and every change is recorded in the tag journal first:
    `genrectl tags undo` gives the files back byte for byte. Skipped: tracks the model
    calls unknown or is less sure of than --min-confidence, tracks where your own label
    differs from the model's, files changed since the last ingest, and files whose tag
    holds another value (unless --overwrite; with --only-empty, any value). The library
    records each written file's new size and mtime, so ingest does not read it again. The
    library keeps the genre tag it read at ingest (training data stays yours).

    \b
    Examples:
      genrectl tags write --dry-run
      genrectl -v tags write --dry-run --max-genres 2
      genrectl tags write --field grouping --min-confidence 0.6
      genrectl tags write --only-empty
      genrectl tags write --genre jazz --overwrite
      genrectl tags write --field mood      # the track's moods (genrectl tracks show)
      genrectl tags write --scope album     # one genre per album, unless a track disagrees
    """
    from cli.render import count_progress

    if options["only_empty"] and options["overwrite"]:
        raise click.BadParameter(
            "--only-empty never replaces a value and --overwrite does: use one",
            param_hint="--only-empty/--overwrite",
        )
    settings = obj.ready_settings()
    quiet = obj.quiet or options["as_json"]
    found, stamps = tracks_to_tag(settings, options["genres"], options["scope"] or settings.scope)
    same: Callable[[str], str] = str.casefold
    if options["field"] == "mood":
        values = moods_to_write(settings, found)
    else:
        taxonomy = _taxonomy(settings)
        values = genre_names(taxonomy, values_to_write(settings, found, options["max_genres"]))
        same = lambda value: taxonomy.canonical(value).casefold()  # noqa: E731
    with count_progress("Reading tags", len(found), quiet=quiet) as bar:
        plan = plan_tag_writes(found, stamps, values, options, bar, same)
    batch = None
    if not options["dry_run"]:
        writes = sum(1 for a in plan if a.action == "write")
        with count_progress("Writing tags", writes, quiet=quiet) as bar:
            batch = apply_tag_writes(settings, plan, options, bar)
    summary = {**_summary(plan, options), "batch": batch}
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


def _result(action: TagAction, dry_run: bool) -> str:
    if action.action == "write":
        return "would write" if dry_run else "written"
    if action.action == "unchanged":
        return "already has it"
    return f"{'skipped' if action.action == 'skip' else 'failed'}: {action.reason}"


def _print_plan(plan: list[TagAction], summary: dict[str, Any], *, verbose: bool) -> None:
    from cli.render import stdout, table

    shown = [a for a in plan if verbose or a.action in ("write", "failed")]
    if shown:
        rows = [
            [
                a.path,
                f"{a.current or '(none)'} \u2192 {a.value or '-'}",
                _result(a, summary["dry_run"]),
            ]
            for a in shown
        ]
        stdout().print(table(["file", "old \u2192 new", "result"], rows))
    verb = "would write" if summary["dry_run"] else "wrote"
    count = summary.get("would_write", summary.get("written"))
    click.echo(
        f"{verb} {summary['field']} in {count} files; {summary['unchanged']} already had it, "
        f"{summary['skipped']} skipped, {summary['failed']} failed."
    )
    for reason, n in sorted(summary["skip_reasons"].items(), key=lambda kv: -kv[1]):
        click.echo(f"  skipped {n}: {reason}")
    if summary["skipped"] and not verbose:
        click.echo("  (-v lists every file with its reason)")
    if summary["batch"] is not None:
        click.echo(f"journal batch {summary['batch']}: `genrectl tags undo` takes it back.")


tags.add_command(undo)
tags.add_command(history)
