"""``genrectl``: every command is registered here."""

from __future__ import annotations

from cli import (
    browse,
    commands,
    experiment,
    genretree,
    housekeeping,
    ingest,
    jobs,
    labels,
    models,
    playlists,
    report,
    tags,
    tracks,
    train,
    verify,
)
from cli.app import cli

cli.add_command(ingest.ingest)
cli.add_command(commands.status)
cli.add_command(commands.config)
cli.add_command(commands.db)
cli.add_command(tracks.tracks)
cli.add_command(commands.worker)
cli.add_command(jobs.jobs)
cli.add_command(jobs.reconcile)
cli.add_command(housekeeping.gc)
cli.add_command(models.models)
cli.add_command(models.predict)
cli.add_command(train.train)
cli.add_command(experiment.evaluate)
cli.add_command(experiment.experiment)
cli.add_command(playlists.playlist)
cli.add_command(browse.genres)
browse.genres.add_command(genretree.tree)
cli.add_command(browse.show)
cli.add_command(labels.label)
cli.add_command(labels.relabel)
cli.add_command(tags.tags)
cli.add_command(report.report)
cli.add_command(verify.verify)


def main() -> None:
    from genrectl.stopping import raise_on_sigterm

    raise_on_sigterm()  # SIGTERM stops a command as cleanly as Ctrl-C does
    cli(prog_name="genrectl")


if __name__ == "__main__":
    main()
