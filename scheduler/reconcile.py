"""``genrectl reconcile``: re-derive lost work from the database and send it again.

The database says what is unfinished; the broker says what its messages still cover. Lost
work is the difference, of every kind:

- featurize jobs still queued in a running batch older than ``grace_s``;
- label jobs ready to run (their track featurized) in a running batch;
- training jobs queued for longer than ``grace_s``, or running with a stopped heartbeat
  (their worker died): the worker that takes one over resumes from its last checkpoint;
- a running batch whose jobs have all finished is closed.

Work a message still covers (waiting in a queue, or running or prefetched on a live worker)
is left alone, so reconcile can run every few seconds (the cluster runs it by itself:
scheduler.periodic) without piling up duplicates. ``everything=True`` sends all unfinished
work regardless, the blunt rule for an operator who distrusts the broker; a duplicate of
work that was not lost finds it done and does nothing (every task is idempotent).

The grace period keeps reconcile from duplicating the messages of an ingest that is still
enqueueing its batch. Messages lost to a Redis restart, a flushed Redis or a worker killed
with its message unacknowledged are all recovered the same way. With ``label``, tracks the
promoted model has not labelled and no batch is labelling are sent to inference as well.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.models import Batch, BatchStatus, Job, JobKind, JobStatus, utcnow
from genrectl.settings import Settings
from scheduler.batches import BatchCounts, chunked, queued_track_ids, refresh_batch
from scheduler.pipeline import TaskCall, label_calls, send
from scheduler.tasknames import FEATURIZE_CHUNK, TRAIN

DEFAULT_GRACE_S = 120.0


@dataclass
class ReconcileReport:
    closed: list[int] = field(default_factory=list)  # batches found finished, now closed
    requeued: dict[int, int] = field(default_factory=dict)  # batch id -> items enqueued again
    chunks: int = 0
    labels: dict[int, int] = field(default_factory=dict)  # batch id -> label jobs sent again
    training: list[int] = field(default_factory=list)  # training jobs sent again
    model: str | None = None
    labelling: int = 0  # tracks outside any batch sent to inference

    @property
    def sent(self) -> int:
        return sum(self.requeued.values()) + sum(self.labels.values()) + len(self.training)

    def as_dict(self) -> dict[str, Any]:
        return {
            "closed": self.closed,
            "requeued": {str(k): v for k, v in self.requeued.items()},
            "requeued_items": sum(self.requeued.values()),
            "chunks": self.chunks,
            "labels": {str(k): v for k, v in self.labels.items()},
            "label_items": sum(self.labels.values()),
            "training": self.training,
            "model": self.model,
            "labelling": self.labelling,
        }


@dataclass
class LostWork:
    featurize: dict[int, list[int]] = field(default_factory=dict)  # batch -> track ids
    label: dict[int, list[int]] = field(default_factory=dict)  # batch -> track ids
    training: list[int] = field(default_factory=list)


def find_lost_work(session: Session, *, grace_s: float) -> tuple[list[int], LostWork]:
    """(batches closed now, the unfinished work of running batches older than ``grace_s``
    and of training jobs), before looking at what the broker holds."""
    from scheduler.trainjobs import lost_train_jobs

    # A batch with an owner is being run by that live process (a dead owner's batch was
    # marked interrupted at this command's start): not lost.
    running = (
        select(Batch.id)
        .where(Batch.status == BatchStatus.RUNNING, Batch.owner.is_(None))
        .order_by(Batch.id)
    )
    closed = [b for b in list(session.scalars(running)) if refresh_batch(session, b).complete]
    cutoff = utcnow() - timedelta(seconds=grace_s)
    lost = LostWork(training=lost_train_jobs(session, grace_s=grace_s))
    for batch_id in session.scalars(running.where(Batch.created_at <= cutoff)):
        featurize = queued_track_ids(session, batch_id)
        if featurize:
            lost.featurize[batch_id] = featurize
        label = _queued_labels(session, batch_id)
        if label:
            lost.label[batch_id] = label
    return closed, lost


def _queued_labels(session: Session, batch_id: int) -> list[int]:
    query = select(Job.track_id).where(
        Job.batch_id == batch_id, Job.kind == JobKind.LABEL, Job.status == JobStatus.QUEUED
    )
    return sorted(session.scalars(query))


def reconcile(
    settings: Settings,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    label: bool = True,
    everything: bool = False,
    on_progress: Callable[[BatchCounts], None] | None = None,
) -> ReconcileReport:
    """Send the lost work again (distributed mode) or run it here (embedded mode)."""
    report = ReconcileReport()
    with session_scope(settings) as session:
        report.closed, lost = find_lost_work(session, grace_s=grace_s)
    if settings.embedded:
        _run_here(settings, lost, report, on_progress or (lambda _: None))
    else:
        _send_lost(settings, lost, report, everything=everything)
    if label:
        report.model, report.labelling = _label_the_rest(settings, everything=everything)
    return report


def _run_here(
    settings: Settings,
    lost: LostWork,
    report: ReconcileReport,
    on_progress: Callable[[BatchCounts], None],
) -> None:
    """Embedded mode: nothing is in flight, so all unfinished work is run here."""
    from scheduler.runner import run_featurize

    for batch_id in sorted(set(lost.featurize) | set(lost.label)):
        track_ids = lost.featurize.get(batch_id, [])
        chunks = list(chunked(track_ids, settings.chunk_size))
        run_featurize(settings, batch_id, chunks, on_progress)  # then labels the batch
        if track_ids:
            report.requeued[batch_id], report.chunks = len(track_ids), report.chunks + len(chunks)
        if batch_id in lost.label:
            report.labels[batch_id] = len(lost.label[batch_id])


def _send_lost(
    settings: Settings, lost: LostWork, report: ReconcileReport, *, everything: bool
) -> None:
    from scheduler.cluster import HeldWork, held_work

    held = HeldWork() if everything else held_work(settings)
    calls: list[TaskCall] = []
    with session_scope(settings) as session:  # a second look: some finished meanwhile
        for batch_id, track_ids in lost.featurize.items():
            free = [t for t in track_ids if (batch_id, t) not in held.featurize]
            free = queued_track_ids(session, batch_id, free) if free else []
            chunks = list(chunked(free, settings.chunk_size))
            calls += [
                TaskCall(FEATURIZE_CHUNK, {"batch_id": batch_id, "track_ids": c}) for c in chunks
            ]
            if free:
                report.requeued[batch_id], report.chunks = len(free), report.chunks + len(chunks)
        for batch_id, track_ids in lost.label.items():
            batch = session.get(Batch, batch_id)
            model_id = batch.model_id if batch is not None else None
            free = [t for t in track_ids if (model_id, t) not in held.label]
            ready = label_calls(session, batch_id, free) if free else []
            calls += ready
            if ready:
                report.labels[batch_id] = sum(len(c.kwargs["track_ids"]) for c in ready)
        report.training = [j for j in lost.training if j not in held.train]
        calls += [TaskCall(TRAIN, {"job_id": j}) for j in report.training]
    send(settings, calls)


def _label_the_rest(settings: Settings, *, everything: bool) -> tuple[str | None, int]:
    """Send the promoted model's missing labels that no batch is seeing to (or compute
    them here, embedded)."""
    from db.registry import promoted_model
    from scheduler.labelling import plan_labelling, run_labelling

    with session_scope(settings) as session:
        model = promoted_model(session)
        if model is None:
            return None, 0
        plan = plan_labelling(session, model, outside_batches=True)
        name = model.name
    if settings.embedded:
        run_labelling(settings, plan)
        return name, plan.n_tracks
    from scheduler.cluster import HeldWork, held_work

    held = HeldWork() if everything else held_work(settings)
    calls = [
        TaskCall(c.name, {**c.kwargs, "track_ids": free})
        for c in plan.calls()
        if (free := [t for t in c.kwargs["track_ids"] if (plan.model_id, t) not in held.label])
    ]
    send(settings, calls)
    return name, sum(len(c.kwargs["track_ids"]) for c in calls)
