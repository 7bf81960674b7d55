"""``genrectl tracks``: browse the library."""

from __future__ import annotations

from typing import Any

import click

from cli.app import Context, emit_json, json_option, pass_context
from cli.browse import show
from cli.moodopts import audio_options, audio_rule, energy_cell, mood_cell, tempo_cell
from cli.scope import scope_option
from db.engine import session_scope
from db.listing import SORT_KEYS, LabelledTrack, TrackFilter, count_labelled, track_page
from db.models import TrackStatus
from db.moods import with_moods


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


@click.group()
def tracks() -> None:
    """Browse the tracks of the library."""


# ``genrectl tracks show`` is ``genrectl show`` (with ``--scope``).
tracks.add_command(show, name="show")


@tracks.command("list")
@click.option("--genre", "genres", multiple=True, help="Only this genre (repeat for several).")
@click.option(
    "--min-confidence",
    type=click.FloatRange(0, 1),
    help="Only model labels at least this confident (0..1); your own labels always pass.",
)
@click.option("--unknown", is_flag=True, help="Only tracks the model could not decide.")
@click.option("--failed", is_flag=True, help="Only tracks that could not be used, with the reason.")
@click.option(
    "--status",
    "status_",
    type=click.Choice([s.value for s in TrackStatus]),
    help="Only tracks with this status.",
)
@click.option(
    "--sort",
    type=click.Choice(sorted(SORT_KEYS)),
    default="path",
    show_default=True,
    help="Order (confidence: most confident first).",
)
@click.option("--reverse", is_flag=True, help="Reverse the order.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many tracks.")
@audio_options
@scope_option
@json_option
@pass_context
def list_tracks(obj: Context, **options: Any) -> None:
    """List tracks: tags, genre label, confidence and the file's own genre tag side by side.

    The genre is your own label where you gave one (shown "(you)"), else the promoted model's:
    at album scope its album's genre unless the track clearly disagrees. The model's track
    and album labels are shown side by side.
    The genre is your own label where you gave one (shown "(you)"), else the promoted model's.
    --genre takes a genre of your genre tree with the genres below it (`genrectl genres
    tree`): --genre Rock lists metal and punk too.

    \b
    Examples:
      genrectl tracks list --genre jazz --min-confidence 0.7 --sort artist
      genrectl tracks list --sort confidence --reverse --limit 20   # least sure first
      genrectl tracks list --unknown
      genrectl tracks list --failed
      genrectl tracks list --json --limit 10
      genrectl tracks list --genre Rock --mood happy --min-energy 0.6 --tempo 100-130
      genrectl tracks list --scope album --genre jazz   # tracks of jazz albums
    """
    settings = obj.ready_settings()
    statuses = [TrackStatus.FAILED] if options["failed"] else []
    if options["status_"]:
        statuses.append(options["status_"])
    mood = audio_rule(options)
    rule = TrackFilter(
        genres=options["genres"],
        min_confidence=options["min_confidence"],
        unknown=options["unknown"],
        statuses=statuses,
        moods=mood.moods,
        min_energy=mood.min_energy,
        tempo=mood.tempo,
        scope=options["scope"] or settings.scope,
    )
    limit = options["limit"]
    with session_scope(settings) as session:
        found = track_page(
            session, rule, sort=options["sort"], reverse=options["reverse"], limit=limit
        )
        # A full page may be a cut: the table says of how many.
        cut = not options["as_json"] and limit is not None and len(found) == limit
        total = count_labelled(session, rule) if cut else len(found)
        found = with_moods(session, found)
    if options["as_json"]:
        emit_json([t.to_dict() for t in found])
        return
    _print_tracks(found, total=total, failed=options["failed"], audio=bool(mood))


def _print_tracks(
    found: list[LabelledTrack], *, total: int, failed: bool, audio: bool = False
) -> None:
    from cli.render import stdout, table

    if failed:
        columns = ["id", "path", "status", "reason"]
        rows = [[t.id, t.path, t.status, t.error] for t in found]
    else:
        columns = ["id", "artist", "title", "album", "genre", "conf", "tag", "status"]
        rows = [
            [
                t.id,
                t.artist,
                t.display_title,
                t.album,
                # The genre as your tree names it ("Hip hop", not the model's "hiphop").
                f"{t.canonical_genre or t.genre} (you)"
                if t.source == "user"
                else t.canonical_genre or t.genre,
                _pct(t.album_confidence if t.scope == "album" else t.confidence),
                t.genre_tag,
                "" if t.status == TrackStatus.OK else t.status,
            ]
            for t in found
        ]
        if any(t.album_genre != t.model_genre for t in found):
            # Side by side: the label of the other scope, where an album changes any.
            other = "track label" if found[0].scope == "album" else "album label"
            columns.insert(6, other)
            for row, t in zip(rows, found, strict=True):
                row.insert(6, t.model_genre if t.scope == "album" else t.album_genre)
        if any(t.reason and t.source != "user" for t in found):
            columns.append("why unknown")
            for row, t in zip(rows, found, strict=True):
                row.append(t.reason if t.source != "user" else None)
        if audio:  # asked by mood, energy or tempo: show them
            columns += ["moods", "bpm", "energy"]
            for row, t in zip(rows, found, strict=True):
                row += [mood_cell(t.moods), tempo_cell(t.tempo_bpm), energy_cell(t.energy)]
    stdout().print(table(columns, rows))
    click.echo(f"{len(found)} tracks" if total == len(found) else f"{len(found)} of {total} tracks")
