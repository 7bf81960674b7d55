"""The featurize-and-label stage of a batch (``genrectl ingest``, ``verify --repair``), and
how it stops early.

A fault of the machine (no space left, the database read-only...), Ctrl-C or SIGTERM stops
it the same way: the batch is closed as ``interrupted`` with the reason, no track is marked
failed for it, what was done is reported, and the last line says what to do; the exit code
is the fault's (5) or the signal's (130, 143).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click
from sqlalchemy import select

from db.engine import session_scope
from db.models import Job, JobKind, JobStatus, Track
from genrectl.errors import EnvironmentFault, InternalFault, Interrupted
from genrectl.settings import Settings
from genrectl.stopping import signal_name, signal_of
from scheduler.batches import IngestPlan

if TYPE_CHECKING:
    from worker.features.sets import FeatureSet

log = logging.getLogger(__name__)


class BatchRun:
    """One committed batch run from the CLI: featurized (embedded or on the cluster), then
    the library labelled; ``stops`` closes it properly when a fault or a signal ends it."""

    def __init__(
        self,
        settings: Settings,
        plan: IngestPlan,
        again: str,
        *,
        quiet: bool,
        as_json: bool,
    ) -> None:
        """``again``: the command that continues the batch's work."""
        self.settings, self.plan, self.quiet, self.as_json = settings, plan, quiet, as_json
        self.again = again
        self.deferred: list[tuple[str, str]] = []  # (path, internal error) left pending

    def featurize_and_label(self, chunks: list[list[int]], sets: Sequence[FeatureSet]) -> None:
        """Run the batch's pipeline (after checking the space featurizing needs): featurize
        its tracks, and label them with the batch's model (scheduler.pipeline)."""
        from cli.ingest import warn
        from cli.render import batch_progress
        from scheduler.runner import run_featurize

        n_tracks = len(self.plan.track_ids)
        if n_tracks and self.settings.embedded:  # a cluster's shards may not be mounted here
            from scheduler.space import check_space

            needed = check_space(self.settings, sets, n_tracks)
            if not self.quiet:
                click.echo(f"Featurizing: {needed.describe(n_tracks)}", err=True)
        if n_tracks or self.plan.label_only:
            with batch_progress(quiet=self.quiet) as bar:
                run_featurize(self.settings, self.plan.batch_id, chunks, bar, warn, warm=True)
            self.deferred = _deferred(self.settings, self.plan.batch_id)
            if self.deferred:  # closed now, while this run's lock still says it is alive
                self._close(f"{len(self.deferred)} tracks met an internal error")
        if not _has_model(self.settings, self.plan.batch_id):  # a repair: label what it rebuilt
            from cli.labels import relabel_library

            relabel_library(self.settings, quiet=self.quiet)

    @contextmanager
    def stops(self) -> Iterator[None]:
        """Turn a fault or an interrupt inside into a closed batch and a summary."""
        try:
            yield
        except KeyboardInterrupt as exc:
            signum = signal_of(exc)
            how = signal_name(signum)
            if not self.settings.embedded:
                raise Interrupted(
                    f"interrupted ({how}): batch #{self.plan.batch_id} goes on on the workers; "
                    f"`genrectl jobs show {self.plan.batch_id}` follows it",
                    signum=signum,
                ) from None
            self._close(f"interrupted by {how}")
            summary = self._summary()
            raise Interrupted(f"interrupted ({how}): {summary}", signum=signum) from None
        except EnvironmentFault as exc:
            if self.settings.embedded:
                self._close(str(exc))
            self._tell(str(exc))
            raise

    def raise_if_deferred(self) -> None:
        """Tracks that met an internal error stay pending: say so, last."""
        if not self.deferred:
            return
        path, error = self.deferred[0]
        n = len(self.deferred)
        log_file = self.settings.home / "logs" / "worker.log"
        raise InternalFault(
            f"{error} on '{path}'"
            + (f" and {n - 1} other tracks" if n > 1 else "")
            + f"; not your files' fault: they stay pending and `{self.again}` tries them again "
            f"(a track fails alone after 3 tries). The traceback is in {log_file}; please "
            "report it"
        )

    def _summary(self) -> str:
        from scheduler.batches import count_jobs

        try:
            with session_scope(self.settings) as session:
                counts = count_jobs(session, self.plan.batch_id)
        except Exception:  # the database may be what failed: say what is certain
            log.info("cannot count what the run did", exc_info=True)
            return f"what was done is kept, none marked failed; `{self.again}` continues"
        total = len(self.plan.track_ids)
        pending = total - counts.done - counts.failed
        return (
            f"{counts.done} of {total} tracks featurized and kept, none marked failed for "
            f"this; {pending} stay pending and `{self.again}` continues"
        )

    def _tell(self, reason: str) -> None:
        summary = self._summary()
        if self.as_json:
            from cli.app import emit_json

            emit_json({"batch_id": self.plan.batch_id, "stopped": reason, "summary": summary})
        elif not self.quiet:
            click.echo(f"Stopped: {summary}.")

    def _close(self, reason: str) -> None:
        from scheduler.liveness import interrupt_batch

        try:
            with session_scope(self.settings) as session:
                interrupt_batch(session, self.plan.batch_id, reason)
        except Exception:  # the database may be what failed; the next start closes it
            log.info("cannot mark batch #%d interrupted", self.plan.batch_id, exc_info=True)


def _has_model(settings: Settings, batch_id: int) -> bool:
    from db.models import Batch

    with session_scope(settings) as session:
        batch = session.get(Batch, batch_id)
        return batch is not None and batch.model_id is not None


def _deferred(settings: Settings, batch_id: int) -> list[tuple[str, str]]:
    with contextlib.suppress(Exception), session_scope(settings) as session:
        rows = session.execute(
            select(Track.path, Job.error)
            .join(Job, Job.track_id == Track.id)
            .where(
                Job.batch_id == batch_id,
                Job.kind == JobKind.FEATURIZE,
                Job.status == JobStatus.QUEUED,
            )
            .order_by(Track.path)
        ).all()
        return [(path, error or "internal error") for path, error in rows]
    return []
