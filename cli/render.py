"""Rich rendering helpers: consoles, progress bars, tables. Imported lazily by commands."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from scheduler.batches import BatchCounts, StageCounts


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


@contextmanager
def batch_progress(*, quiet: bool) -> Iterator[Any]:
    """One progress bar with ETA per stage of a batch (featurizing, labelling), each shown
    once the stage has work; takes BatchCounts. Silent with -q."""
    progress = Progress(
        TextColumn("[bold]{task.description:<11}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr(),
        disable=quiet,
        transient=False,
    )
    with progress:
        bars: dict[str, Any] = {}

        def show(name: str, stage: StageCounts) -> None:
            if stage.total and name not in bars:
                bars[name] = progress.add_task(name, total=stage.total, failed=0)
            if name in bars:
                progress.update(
                    bars[name], total=stage.total, completed=stage.finished, failed=stage.failed
                )

        def update(counts: BatchCounts) -> None:
            show("Featurizing", counts)
            show("Labelling", counts.label)

        yield update


@contextmanager
def count_progress(description: str, total: int, *, quiet: bool) -> Iterator[Any]:
    """A progress bar with ETA that takes (completed, total)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr(),
        disable=quiet,
    )
    with progress:
        task = progress.add_task(description, total=total)

        def update(completed: int, new_total: int) -> None:
            progress.update(task, completed=completed, total=new_total)

        yield update


def table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
) -> Table:
    grid = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*("" if v is None else str(v) for v in row))
    return grid
