"""``genrectl playlist``: smart playlists saved as rules, and their export to EXTM3U."""

from __future__ import annotations

import difflib
import os
import random
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session

from cli.app import Context, emit_json, json_option, pass_context
from cli.moodopts import audio_options, audio_rule
from cli.scope import scope_option
from db.engine import session_scope
from db.listing import UNKNOWN, LabelledTrack, TrackFilter, labelled_tracks, normalize_genre
from db.models import Playlist, TrackStatus
from db.moods import MoodRule
from db.playlists import (
    ORDERS,
    evaluate_playlist,
    find_playlist,
    genre_counts,
    known_genres,
    list_playlists,
    order_tracks,
    refresh_playlists,
)
from genrectl.errors import GenreError

MAX_SEED = 2**31 - 1


def rule_summary(playlist: Playlist) -> str:
    """``jazz, blues; confidence >= 60%; 2 per artist; 50 tracks; random (seed 7)``."""
    from cli.similar import like_summary

    parts = [p for p in [", ".join(playlist.genres), *like_summary(playlist)] if p]
    if playlist.mood_rule:
        parts.append(MoodRule.from_dict(playlist.mood_rule).summary())
    if playlist.min_confidence is not None:
        parts.append(f"confidence >= {playlist.min_confidence:.0%}")
    if playlist.max_per_artist is not None:
        parts.append(f"{playlist.max_per_artist} per artist")
    if playlist.max_tracks is not None:
        parts.append(f"{playlist.max_tracks} tracks")
    order = playlist.order_by
    parts.append(f"random (seed {playlist.seed})" if order == "random" else f"by {order}")
    if playlist.scope == "album":
        parts.append("album genres")
    return "; ".join(parts)


def playlist_dict(playlist: Playlist) -> dict[str, Any]:
    return {
        "name": playlist.name,
        "genres": playlist.genres,
        "min_confidence": playlist.min_confidence,
        "limit": playlist.max_tracks,
        "order": playlist.order_by,
        "max_per_artist": playlist.max_per_artist,
        "seed": playlist.seed,
        "mood_rule": playlist.mood_rule,
        "like": playlist.like_track_ids,
        "exclude_genres": playlist.exclude_genres,
        "scope": playlist.scope,
        "rule": rule_summary(playlist),
        "created_at": playlist.created_at.isoformat(timespec="seconds"),
        "refreshed_at": None
        if playlist.refreshed_at is None
        else playlist.refreshed_at.isoformat(timespec="seconds"),
    }


def _check_name(name: str) -> str:
    clean = name.strip()
    if not clean or len(clean) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in clean):
        raise click.BadParameter(
            f"{name!r}: a playlist name needs 1 to 255 printable characters", param_hint="NAME"
        )
    return clean


def _check_genres(
    session: Session, genres: tuple[str, ...], param_hint: str = "--genre"
) -> list[str]:
    wanted = list(dict.fromkeys(normalize_genre(g) for g in genres))
    known = known_genres(session)
    for genre in wanted:
        if known and genre not in known:
            close = difflib.get_close_matches(genre, sorted(known), n=3)
            hint = (
                f"did you mean {', '.join(close)}?"
                if close
                else "known: " + ", ".join(sorted(known))
            )
            raise click.BadParameter(
                f"no model or label knows genre {genre!r}; {hint}", param_hint=param_hint
            )
    return wanted


@click.group()
def playlist() -> None:
    """Smart playlists: saved rules over the library's genre labels.

    A playlist is a rule (genres, minimum confidence, order, limits). It is evaluated every
    time it is shown or exported, so it follows new labels, your own corrections and a newly
    promoted model.

    \b
    Example:
      genrectl playlist create "Late jazz" --genre jazz --genre blues --order random --limit 50
      genrectl playlist export "Late jazz" -o ~/Music/late-jazz.m3u8 --relative-to ~/Music
      genrectl playlist create "More like this" --like 42 --max-per-artist 1 --limit 30
    """


@playlist.command("create")
@click.argument("name")
@click.option(
    "--genre", "genres", multiple=True, help="Genre to include, with its subgenres (repeat)."
)
@click.option("--like", "likes", multiple=True, help="Order by similarity to this track (repeat).")
@click.option(
    "--exclude-genre", "excluded", multiple=True, help="Genre to leave out, with its subgenres."
)
@click.option("--min-confidence", type=click.FloatRange(0, 1), help="Model confidence 0..1.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many tracks.")
@click.option("--order", type=click.Choice(ORDERS), default="confidence", show_default=True)
@click.option("--max-per-artist", type=click.IntRange(min=1), help="At most N tracks per artist.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), help="Seed of --order random.")
@click.option("--replace", is_flag=True, help="Replace a playlist of the same name.")
@audio_options
@scope_option
@json_option
@pass_context
def create(obj: Context, name: str, **options: Any) -> None:
    """Save a playlist rule NAME and show how many tracks it selects.

    Your own labels (`genrectl label`) always count as certain; --min-confidence filters the
    model's labels. --order random is stable: the seed is stored (one is drawn if not given).

    \b
    Examples:
      genrectl playlist create jazz --genre jazz
      genrectl playlist create "Party" --genre disco --genre pop --min-confidence 0.6 \\
          --order random --max-per-artist 2 --limit 40
      genrectl playlist create "Upbeat rock" --genre Rock --mood happy --min-energy 0.6
      genrectl playlist create "Like Wasted Years" --like "Iron Maiden/Wasted Years.mp3" \\
          --exclude-genre pop --max-per-artist 1 --limit 30

    --like TRACK (an id or a path; repeat for several) orders the library by similarity to
    those tracks, under the other rules, and leaves the seeds themselves out; without
    --limit it keeps 50 tracks. Refreshing it brings in new tracks like the seeds.
      genrectl playlist create "Jazz albums" --genre jazz --scope album
    """
    name = _check_name(name)
    mood = audio_rule(options)
    if not (options["genres"] or mood or options["likes"]):
        raise click.UsageError(
            "give at least one --genre, --mood, --min-energy or --tempo, or --like TRACK"
        )
    if (
        options["likes"]
        and click.get_current_context().get_parameter_source("order")
        != click.core.ParameterSource.DEFAULT
    ):
        raise click.BadParameter("a --like playlist is ordered by similarity", param_hint="--order")
    if options["seed"] is not None and options["order"] != "random":
        raise click.BadParameter("--seed only applies to --order random", param_hint="--seed")
    settings = obj.ready_settings()
    with session_scope(settings) as session:
        genres = _check_genres(session, options["genres"])
        excluded = _check_genres(session, options["excluded"], "--exclude-genre") or None
        likes = None
        if options["likes"]:
            from cli.similar import resolve_seeds
            from db.similar import DEFAULT_LIMIT, SIMILARITY

            likes = resolve_seeds(session, options["likes"])
            options["order"], options["limit"] = SIMILARITY, options["limit"] or DEFAULT_LIMIT
        existing = session.query(Playlist).filter(Playlist.name == name).one_or_none()
        if existing is not None and not options["replace"]:
            raise GenreError(f"a playlist named {name!r} exists: add --replace to replace it")
        if existing is not None:
            session.delete(existing)
            session.flush()
        seed = options["seed"]
        if options["order"] == "random" and seed is None:
            seed = random.SystemRandom().randrange(MAX_SEED)
        session.add(
            Playlist(
                name=name,
                genres=genres,
                min_confidence=options["min_confidence"],
                max_tracks=options["limit"],
                order_by=options["order"],
                max_per_artist=options["max_per_artist"],
                seed=seed,
                mood_rule=mood.to_dict(),
                like_track_ids=likes,
                exclude_genres=excluded,
                scope=options["scope"] or settings.scope,
            )
        )
        session.flush()
        (change,) = refresh_playlists(session, [name])
        detail = {**playlist_dict(find_playlist(session, name)), "tracks": change.total}
    if options["as_json"]:
        emit_json(detail)
        return
    click.echo(f"created playlist {name!r}: {detail['rule']} -> {change.total} tracks")


@playlist.command("list")
@json_option
@pass_context
def list_(obj: Context, as_json: bool) -> None:
    """List playlists with their rule and how many tracks each selects now.

    \b
    Example:
      genrectl playlist list
    """
    settings = obj.ready_settings()
    with session_scope(settings) as session:
        rows = [{**playlist_dict(p), "tracks": _count(session, p)} for p in list_playlists(session)]
    if as_json:
        emit_json(rows)
        return
    from cli.render import stdout, table

    stdout().print(
        table(["name", "tracks", "rule"], [[r["name"], r["tracks"], r["rule"]] for r in rows])
    )
    if not rows:
        click.echo("No playlists yet: genrectl playlist create NAME --genre GENRE")


def _count(session: Session, playlist: Playlist) -> int | str:
    try:
        return len(evaluate_playlist(session, playlist))
    except GenreError as exc:  # a --like seed left the library: say so, list the others
        return f"- ({exc})"


def track_row(position: int, track: LabelledTrack) -> list[Any]:
    genre = track.canonical_genre or track.genre  # as your genre tree names it
    label = f"{genre} (you)" if track.source == "user" else genre
    confidence = "" if track.confidence is None else f"{track.confidence:.0%}"
    minutes = (
        ""
        if track.duration_s is None
        else f"{int(track.duration_s) // 60}:{int(track.duration_s) % 60:02d}"
    )
    return [position, track.id, track.artist, track.display_title, label, confidence, minutes]


TRACK_COLUMNS = ["#", "id", "artist", "title", "genre", "conf", "time"]


@playlist.command("show")
@click.argument("name")
@json_option
@pass_context
def show(obj: Context, name: str, as_json: bool) -> None:
    """The tracks playlist NAME selects now, in order.

    \b
    Example:
      genrectl playlist show jazz --json
    """
    settings = obj.ready_settings()
    with session_scope(settings) as session:
        found = find_playlist(session, name)
        detail = playlist_dict(found)
        tracks = evaluate_playlist(session, found)
        from cli.similar import seed_notes

        notes = seed_notes(session, found)
    if as_json:
        emit_json({**detail, "tracks": [t.to_dict() for t in tracks]})
        return
    from cli.render import stdout, table

    rows = [track_row(i, t) for i, t in enumerate(tracks, 1)]
    stdout().print(table(TRACK_COLUMNS, rows, title=f"{name}: {detail['rule']}"))
    click.echo(f"{len(tracks)} tracks")
    for note in notes:
        click.echo(note)


@playlist.command("refresh")
@click.argument("names", nargs=-1)
@json_option
@pass_context
def refresh(obj: Context, names: tuple[str, ...], as_json: bool) -> None:
    """Evaluate playlists (all, or NAMES) and say what changed since the last refresh.

    `genrectl label` and `genrectl relabel` refresh every playlist by themselves.

    \b
    Example:
      genrectl playlist refresh
    """
    settings = obj.ready_settings()
    with session_scope(settings) as session:
        changes = [c.to_dict() for c in refresh_playlists(session, names)]
    if as_json:
        emit_json(changes)
        return
    for change in changes:
        if "problem" in change:
            click.echo(f"{change['name']}: {change['problem']}")
            continue
        click.echo(
            f"{change['name']}: {change['tracks']} tracks (+{change['added']} -{change['removed']})"
        )


@playlist.command("delete")
@click.argument("name")
@pass_context
def delete(obj: Context, name: str) -> None:
    """Delete the rule NAME (exported .m3u8 files are left alone).

    \b
    Example:
      genrectl playlist delete jazz
    """
    settings = obj.ready_settings()
    with session_scope(settings) as session:
        session.delete(find_playlist(session, name))
    click.echo(f"deleted playlist {name!r}")


def _directory(path: Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(path)))


@playlist.command("export")
@click.argument("name", required=False)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="The .m3u8 to write."
)
@click.option(
    "--all",
    "all_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write every playlist and every genre into this folder.",
)
@click.option(
    "--relative-to",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write paths relative to this folder (usually where the .m3u8 lives).",
)
@json_option
@pass_context
def export(
    obj: Context,
    name: str | None,
    output: Path | None,
    all_dir: Path | None,
    relative_to: Path | None,
    as_json: bool,
) -> None:
    """Write playlist NAME to an EXTM3U file (UTF-8, duration and "artist - title").

    Paths are absolute unless --relative-to DIR is given. --all DIR writes one NAME.m3u8
    per playlist and one genre-GENRE.m3u8 per genre; names are made safe and never leave DIR.

    \b
    Examples:
      genrectl playlist export jazz -o jazz.m3u8
      genrectl playlist export jazz -o ~/Music/jazz.m3u8 --relative-to ~/Music
      genrectl playlist export --all ~/Music/Playlists --relative-to ~/Music/Playlists
    """
    if (all_dir is None) == (name is None) or (name is not None and output is None):
        raise click.UsageError("give NAME with -o FILE, or --all DIR")
    if all_dir is not None and output is not None:
        raise click.UsageError("-o FILE is for one playlist; --all DIR writes many")
    settings = obj.ready_settings()
    base = None if relative_to is None else _directory(relative_to)
    if all_dir is not None:
        written = export_all(settings, _directory(all_dir), relative_to=base)
    else:
        assert name is not None and output is not None
        written = [export_one(settings, name, _directory(output.parent) / output.name, base)]
    if as_json:
        emit_json(written)
        return
    for item in written:
        click.echo(f"wrote {item['path']} ({item['tracks']} tracks)")
        for path in item["skipped"]:
            click.echo(f"  skipped {path!r}: a path with a line break cannot be in a playlist")


def _write(name: str, tracks: list[LabelledTrack], path: Path, base: Path | None) -> dict[str, Any]:
    from cli.m3u import render_m3u, write_text_atomic

    m3u = render_m3u(name, tracks, relative_to=base)
    write_text_atomic(path, m3u.text)
    return {"name": name, "path": str(path), "tracks": m3u.written, "skipped": m3u.skipped}


def export_one(settings: Any, name: str, path: Path, base: Path | None) -> dict[str, Any]:
    with session_scope(settings) as session:
        tracks = evaluate_playlist(session, find_playlist(session, name))
    return _write(name, tracks, path, base)


def export_all(settings: Any, directory: Path, *, relative_to: Path | None) -> list[dict[str, Any]]:
    """One file per playlist, then one per genre (not ``unknown``), all inside ``directory``."""
    from cli.m3u import NameRegistry

    names = NameRegistry(directory)
    jobs: list[tuple[str, list[LabelledTrack], Path]] = []
    with session_scope(settings) as session:
        for found in list_playlists(session):
            jobs.append((found.name, evaluate_playlist(session, found), names.path_for(found.name)))
        for row in genre_counts(session)["genres"]:
            genre = row["genre"]
            if genre == UNKNOWN:
                continue
            rule = TrackFilter(genres=(genre,), statuses=(TrackStatus.OK,))
            tracks = order_tracks(labelled_tracks(session, rule), "artist")
            jobs.append((genre, tracks, names.path_for(genre, prefix="genre-")))
    return [_write(name, tracks, path, relative_to) for name, tracks, path in jobs]
