"""``genrectl``: every command is registered here."""

from __future__ import annotations

from cli import commands, ingest, models, tracks
from cli.app import cli

cli.add_command(ingest.ingest)
cli.add_command(commands.status)
cli.add_command(commands.config)
cli.add_command(commands.db)
cli.add_command(tracks.tracks)
cli.add_command(commands.worker)
cli.add_command(models.models)
cli.add_command(models.predict)


def main() -> None:
    cli(prog_name="genrectl")


if __name__ == "__main__":
    main()
