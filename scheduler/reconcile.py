"""``genrectl reconcile``: re-derive lost work from the database and enqueue it again.

The rule is deliberately simple, and correct because every task is idempotent:

- every job still queued in a running batch created more than ``grace_s`` ago is enqueued
  again, whether or not a message for it still sits somewhere (in a queue, in a dead
  worker's unacked set). A duplicate delivery finds the job no longer queued and does
  nothing: featurize_chunk checks each job under a row lock before recording it;
- every featurized track that the promoted model has not labelled is sent to inference
  again; infer_shard replaces the same prediction rows (unique per track and model);
- a running batch whose jobs have all finished is closed.

The grace period keeps reconcile from duplicating the messages of an ingest that is still
enqueueing its batch. Messages lost to a Redis restart, a flushed Redis or a worker killed
with its message unacknowledged are all recovered the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.models import Batch, BatchStatus, utcnow
from genrectl.settings import Settings
from scheduler.batches import BatchCounts, chunked, queued_track_ids, refresh_batch

DEFAULT_GRACE_S = 120.0


@dataclass
class ReconcileReport:
    closed: list[int] = field(default_factory=list)  # batches found finished, now closed
    requeued: dict[int, int] = field(default_factory=dict)  # batch id -> items enqueued again
    chunks: int = 0
    model: str | None = None
    labelling: int = 0  # tracks sent to inference

    def as_dict(self) -> dict[str, Any]:
        return {
            "closed": self.closed,
            "requeued": {str(k): v for k, v in self.requeued.items()},
            "requeued_items": sum(self.requeued.values()),
            "chunks": self.chunks,
            "model": self.model,
            "labelling": self.labelling,
        }


def find_lost_work(session: Session, *, grace_s: float) -> tuple[list[int], dict[int, list[int]]]:
    """(batches closed now, {batch id: its still-queued track ids}) for running batches."""
    # A batch with an owner is being run by that live process (a dead owner's batch was
    # marked interrupted at this command's start): not lost.
    running = (
        select(Batch.id)
        .where(Batch.status == BatchStatus.RUNNING, Batch.owner.is_(None))
        .order_by(Batch.id)
    )
    closed = [b for b in list(session.scalars(running)) if refresh_batch(session, b).complete]
    cutoff = utcnow() - timedelta(seconds=grace_s)
    old = list(session.scalars(running.where(Batch.created_at <= cutoff)))
    lost = {batch_id: queued_track_ids(session, batch_id) for batch_id in old}
    return closed, {k: v for k, v in lost.items() if v}


def reconcile(
    settings: Settings,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    label: bool = True,
    on_progress: Callable[[BatchCounts], None] | None = None,
) -> ReconcileReport:
    """Enqueue the lost work (distributed mode) or run it here (embedded mode)."""
    from scheduler.runner import enqueue_featurize, run_featurize

    report = ReconcileReport()
    with session_scope(settings) as session:
        report.closed, lost = find_lost_work(session, grace_s=grace_s)
    for batch_id, track_ids in lost.items():
        chunks = list(chunked(track_ids, settings.chunk_size))
        if settings.embedded:
            run_featurize(settings, batch_id, chunks, on_progress or (lambda _: None))
        else:
            enqueue_featurize(settings, batch_id, chunks)
        report.requeued[batch_id] = len(track_ids)
        report.chunks += len(chunks)
    if label:
        report.model, report.labelling = _relabel(settings)
    return report


def _relabel(settings: Settings) -> tuple[str | None, int]:
    """Send the promoted model's missing labels to inference (or compute them here)."""
    from db.registry import promoted_model
    from scheduler.labelling import enqueue_labelling, plan_labelling, run_labelling

    with session_scope(settings) as session:
        model = promoted_model(session)
        if model is None:
            return None, 0
        plan = plan_labelling(session, model)
        name = model.name
    if plan.n_tracks:
        if settings.embedded:
            run_labelling(settings, plan, lambda _done, _total: None)
        else:
            enqueue_labelling(settings, plan)
    return name, plan.n_tracks
