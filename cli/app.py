"""The root click group, shared options, and the one place errors become messages."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from genrectl.errors import EnvironmentFault, GenreError, Interrupted
from genrectl.settings import Settings
from genrectl.stopping import signal_of

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_FAILURES = 0, 1, 2, 3, 4
EXIT_ENVIRONMENT = EnvironmentFault.exit_code  # 5: the machine failed, not a file
EXIT_DAMAGED = 6  # `verify` found damaged data it did not (or could not) repair


@dataclass
class Context:
    settings: Settings
    verbose: int = 0
    quiet: bool = False
    _schema_checked: bool = False

    def ready_settings(self) -> Settings:
        """Settings with the database schema known to be current (embedded mode migrates)."""
        if not self._schema_checked:
            from db.migrate import current_revision, head_revision, prepare

            if self.settings.embedded:
                prepare(self.settings)
                self._reap_dead_runs()
            elif current_revision(self.settings) != head_revision():
                raise GenreError(
                    "the database schema is not current: run `genrectl db upgrade` once"
                )
            self._schema_checked = True
        return self.settings

    def _reap_dead_runs(self) -> None:
        """Runs whose process died (kill -9, a crash) are marked interrupted, and said so."""
        from db.engine import session_scope
        from scheduler.liveness import reap_dead_runs

        with session_scope(self.settings) as session:
            dead = reap_dead_runs(session, self.settings)
        for run in dead if not self.quiet else ():
            click.echo(
                f"note: batch #{run.batch_id} was interrupted: its genrectl process died; "
                f"its {run.unfinished} unfinished tracks are taken up by the next "
                f"{run.resumed_by}",
                err=True,
            )


class GenrectlGroup(click.Group):
    """Turns GenreError into one line on stderr and an exit code; -v shows the traceback.

    Commands may be registered lazily (``add_lazy_command``): their module is imported when
    the command runs, so that ``genrectl --help`` and a spawned worker (which imports the
    CLI's main module again) do not import every command's database code (0.5 s).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[str, str]] = {}  # name -> ("module:attribute", summary)

    def add_lazy_command(self, name: str, target: str, summary: str) -> None:
        """Register ``target`` ("module:attribute") as ``name``; ``summary``, the first
        sentence of its help, is what ``--help`` lists until it is imported."""
        self.lazy[name] = (target, summary)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, attribute = self.lazy[cmd_name][0].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, with a lazy command's summary standing in for its help."""
        listed = [
            (name, self.commands.get(name) or click.Command(name, help=self.lazy[name][1]))
            for name in self.list_commands(ctx)
        ]
        listed = [(name, command) for name, command in listed if not command.hidden]
        if listed:
            limit = formatter.width - 6 - max(len(name) for name, _ in listed)
            with formatter.section("Commands"):
                formatter.write_dl([(n, c.get_short_help_str(limit)) for n, c in listed])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            except KeyboardInterrupt as exc:
                # Commands that keep work (ingest, relabel, train) say what they kept and
                # raise Interrupted; any other command has nothing half-done to report.
                raise Interrupted(
                    "interrupted: nothing was left half-written; run the command again",
                    signum=signal_of(exc),
                ) from None
            except Exception as exc:
                fault = _machine_fault(exc, ctx.find_object(Context))
                if fault is None:
                    raise
                raise fault from exc
        except Interrupted as exc:
            click.echo(str(exc), err=True)
            sys.exit(exc.exit_code)
        except GenreError as exc:
            obj = ctx.find_object(Context)
            if obj is not None and obj.verbose:
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


def _machine_fault(exc: Exception, obj: Context | None) -> EnvironmentFault | None:
    """The database failing or storage full, read-only or failing, as a one-line fault;
    None for anything else (a bug keeps its traceback)."""
    from genrectl.faults import database_fault, is_database_error, storage_fault

    if isinstance(exc, GenreError):
        return None
    settings = obj.settings if obj is not None else None
    if is_database_error(exc) and settings is not None:
        return database_fault(exc, settings)
    filename = getattr(exc, "filename", None)
    if isinstance(exc, OSError) and isinstance(filename, str):
        return storage_fault(exc, path=Path(filename), what=f"'{filename}'", hint=None)
    return None


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
