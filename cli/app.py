"""The root click group, shared options, and the one place errors become messages."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from genrectl.errors import GenreError
from genrectl.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_FAILURES = 0, 1, 2, 3, 4


@dataclass
class Context:
    settings: Settings
    verbose: int = 0
    quiet: bool = False
    _schema_checked: bool = False

    def ready_settings(self) -> Settings:
        """Settings with the database schema known to be current (embedded mode migrates)."""
        if not self._schema_checked:
            from db.migrate import current_revision, head_revision, upgrade

            if self.settings.embedded:
                upgrade(self.settings)
            elif current_revision(self.settings) != head_revision():
                raise GenreError(
                    "the database schema is not current: run `genrectl db upgrade` once"
                )
            self._schema_checked = True
        return self.settings


class GenrectlGroup(click.Group):
    """Turns GenreError into one line on stderr and an exit code; -v shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GenreError as exc:
            obj = ctx.find_object(Context)
            if obj is not None and obj.verbose:
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


pass_context = click.make_pass_decorator(Context)


def json_option(function: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(function)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING
    if verbose:
        level = logging.INFO if verbose == 1 else logging.DEBUG
    if quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@click.group(cls=GenrectlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More output; -v shows tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final summary.")
@click.version_option(package_name="genrectl")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Label a music library by genre and build playlists from it.

    \b
    Quick start:
      genrectl ingest ~/Music       # decode, featurize and label every track
      genrectl status               # what is in the library
      genrectl tracks list --failed # files that could not be used, and why
    """
    setup_logging(verbose, quiet)
    try:
        settings = Settings.from_env()
    except GenreError as exc:
        raise click.UsageError(str(exc)) from exc
    ctx.obj = Context(settings=settings, verbose=verbose, quiet=quiet)
