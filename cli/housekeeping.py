"""``genrectl gc``: remove stored features nothing uses (the cluster also runs it itself)."""

from __future__ import annotations

from typing import Any

import click

from cli.app import Context, emit_json, json_option, pass_context


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


@click.command()
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option(
    "--min-age",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    help="Leave files and shards younger than this many seconds alone (a shard is written "
    "a moment before its commit).",
)
@click.option(
    "--missing-days",
    type=click.FloatRange(min=0),
    default=7.0,
    show_default=True,
    help="Remove the features of tracks missing from the library for longer than this.",
)
@json_option
@pass_context
def gc(obj: Context, dry_run: bool, min_age: float, missing_days: float, as_json: bool) -> None:
    """Remove stored features nothing uses: shard files no row names (a commit that
    failed, a worker killed while writing), shards no track uses any more, and the features
    of tracks deleted from the library. Never a shard in use; safe while workers run. The
    cluster runs it every GENRECTL_GC_INTERVAL seconds by itself.

    \b
    Examples:
      genrectl gc --dry-run
      genrectl gc --missing-days 0      # deleted files' features go now
    """
    from scheduler.gc import collect_garbage

    settings = obj.ready_settings()
    garbage = collect_garbage(
        settings, dry_run=dry_run, min_age_s=min_age, missing_days=missing_days
    )
    report: dict[str, Any] = {**garbage.as_dict(), "dry_run": dry_run}
    if as_json:
        emit_json(report)
        return
    sections = (
        ("orphan shard files (no row names them)", garbage.orphan_files),
        ("shards no track uses", garbage.unused_shards),
        ("temporary files of unfinished writes", garbage.temp_files),
    )
    for title, files in sections:
        click.echo(f"{title}: {len(files)}")
        for stored in files[: None if obj.verbose else 20]:
            click.echo(f"  {stored.path} ({_size(stored.bytes)})")
    click.echo(
        f"features of tracks missing for over {missing_days:g} days: "
        f"{len(garbage.missing_tracks)} tracks, {garbage.missing_segments} rows, "
        f"{garbage.missing_vectors} similarity vectors"
    )
    verb = "Would free" if dry_run else "Freed"
    click.echo(
        f"{verb} {_size(garbage.bytes)}." + (" (dry run: nothing removed)" if dry_run else "")
    )
