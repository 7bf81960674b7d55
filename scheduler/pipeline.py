"""The pipeline a track goes through: featurize (cpu queue), then label (gpu queue).

Each stage of each track is a job row of its batch (``JobKind``), committed before any
message is sent. The worker that finishes a stage sends the next one itself: a featurize
chunk that committed its shard enqueues the labelling of its tracks with the batch's model,
so the cluster finishes a batch with no client attached. Distributed mode sends these
calls to the broker (``send``); embedded mode runs the very same calls in local processes
(``run_here``), so both modes go through one pipeline and leave the same database.

Labelling is idempotent (shard + model: a second run replaces the same prediction rows),
and a label job is done when its model's predictions are stored, in the same transaction.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from db.engine import session_scope
from db.models import Batch, BatchStatus, Job, JobKind, JobStatus, Model, Segment, utcnow
from genrectl.settings import Settings
from scheduler.batches import BatchCounts, add_jobs, move_jobs, refresh_batch
from scheduler.tasknames import FEATURIZE_CHUNK, INFER_SHARD, resolve

log = logging.getLogger(__name__)

# A label job whose labelling raised this many times (a broken model file, a corrupt
# shard) fails with the reason instead of being sent again for ever.
MAX_LABEL_ATTEMPTS = 3


@dataclass(frozen=True)
class TaskCall:
    """One message: a task name and its JSON keyword arguments."""

    name: str
    kwargs: dict[str, Any]


def label_calls(
    session: Session, batch_id: int, track_ids: Sequence[int] | None = None
) -> list[TaskCall]:
    """Infer calls for the batch's label jobs that are ready (of ``track_ids``, if given):
    queued, and the track's featurize job in the batch done, or absent (its features were
    there already). One call per shard holding the model's first feature set of the
    tracks. Jobs that cannot be labelled any more are failed with the reason."""
    batch = session.get(Batch, batch_id)
    ready = _ready_label_jobs(session, batch_id, track_ids)
    if batch is None or not ready:
        return []
    model = session.get(Model, batch.model_id) if batch.model_id is not None else None
    if model is None:
        fail_label_jobs(session, [batch_id], ready, "the batch's model was deleted")
        return []
    ready = _not_in_damaged_shards(session, batch_id, model, ready)
    by_shard = shards_of(session, model, ready)
    placed = {t for ids in by_shard.values() for t in ids}
    unplaced = [t for t in ready if t not in placed]
    if unplaced:
        fail_label_jobs(session, [batch_id], unplaced, "the track has no features for the model")
    return [
        TaskCall(INFER_SHARD, {"shard_id": shard, "model_id": model.id, "track_ids": ids})
        for shard, ids in sorted(by_shard.items())
    ]


def _not_in_damaged_shards(
    session: Session, batch_id: int, model: Model, track_ids: list[int]
) -> list[int]:
    """``track_ids`` less those whose features are in a damaged shard: their label jobs fail,
    naming the way out (`genrectl verify --repair` rebuilds the shard, then labels)."""
    from genrectl.errors import REPAIR_HINT
    from scheduler.labelling import damaged_tracks
    from worker.features.sets import model_feature_sets  # light: no torch

    versions = [s.version for s in model_feature_sets(model.feature_params)]
    damaged = set(session.scalars(damaged_tracks(session, versions)))
    held = [t for t in track_ids if t in damaged]
    if held:
        reason = f"its features are in a damaged shard; {REPAIR_HINT}"
        fail_label_jobs(session, [batch_id], held, reason)
    return [t for t in track_ids if t not in damaged]


def _ready_label_jobs(
    session: Session, batch_id: int, track_ids: Sequence[int] | None
) -> list[int]:
    featurize = aliased(Job)
    pending_featurize = select(featurize.id).where(
        featurize.batch_id == Job.batch_id,
        featurize.track_id == Job.track_id,
        featurize.kind == JobKind.FEATURIZE,
        featurize.status != JobStatus.DONE,
    )
    query = select(Job.track_id).where(
        Job.batch_id == batch_id,
        Job.kind == JobKind.LABEL,
        Job.status == JobStatus.QUEUED,
        ~pending_featurize.exists(),
    )
    if track_ids is not None:
        query = query.where(Job.track_id.in_(list(track_ids)))
    return sorted(session.scalars(query))


def shards_of(session: Session, model: Model, track_ids: Sequence[int]) -> dict[int, list[int]]:
    """``track_ids`` by the shard of their rows of the model's first feature set."""
    from worker.features.sets import model_feature_sets  # light: no torch

    first = model_feature_sets(model.feature_params)[0].version
    by_shard: dict[int, set[int]] = defaultdict(set)
    rows = session.execute(
        select(Segment.shard_id, Segment.track_id).where(
            Segment.track_id.in_(list(track_ids)), Segment.feature_version == first
        )
    )
    for shard_id, track_id in rows:
        by_shard[shard_id].add(track_id)
    return {shard: sorted(ids) for shard, ids in by_shard.items()}


def after_featurize(settings: Settings, *, batch_id: int, track_ids: list[int]) -> list[TaskCall]:
    """What follows a committed featurize chunk: the labelling of its featurized tracks.

    The batch is refreshed here too, after the chunk's commit: two chunks committing at
    once each count the other's jobs as queued, so neither closes the batch in its own
    transaction; whichever looks last, after both commits, does."""
    with session_scope(settings) as session:
        refresh_batch(session, batch_id)
        return label_calls(session, batch_id, track_ids)


def send(settings: Settings, calls: Sequence[TaskCall]) -> int:
    """Enqueue ``calls`` (distributed mode); returns how many were sent."""
    from scheduler.runner import send_tasks

    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in calls:
        by_name[call.name].append(call.kwargs)
    return sum(send_tasks(settings, name, kwargs) for name, kwargs in by_name.items())


def run_here(settings: Settings, call: TaskCall) -> Any:
    """Run ``call`` in this process, then what follows it (embedded mode's executor)."""
    if call.name == INFER_SHARD:
        return label_stage(settings, **call.kwargs)
    result = resolve(call.name)(settings, **call.kwargs)
    if call.name == FEATURIZE_CHUNK:
        for follow in after_featurize(settings, **call.kwargs):
            try:
                run_here(settings, follow)
            except Exception as exc:  # counted against the label jobs; finish_here tries again
                log.warning("labelling after a chunk failed: %s", exc)
    return result


def label_stage(
    settings: Settings, *, shard_id: int, model_id: int, track_ids: list[int] | None = None
) -> int:
    """Label one shard's tracks (``infer_shard``, which marks their label jobs done). An
    error that is not transient counts against the tracks' label jobs, then propagates."""
    try:
        labelled: int = resolve(INFER_SHARD)(
            settings,
            shard_id=shard_id,
            model_id=model_id,
            track_ids=track_ids,
            on_damaged=_skip_damaged,  # marked damaged; label_calls fails their jobs
        )
    except Exception as exc:
        # Imported here, not at the top: Celery and redis cost an embedded worker 0.5 s.
        from scheduler.celery_app import TRANSIENT_ERRORS

        if isinstance(exc, TRANSIENT_ERRORS):
            raise
        log.exception("labelling shard %d with model %d failed", shard_id, model_id)
        reason = f"labelling failed: {type(exc).__name__}: {exc}"
        with session_scope(settings) as session:
            count_label_failure(session, model_id, track_ids, reason)
        raise
    with session_scope(settings) as session:  # after the commit, as in after_featurize
        running = select(Batch.id).where(
            Batch.model_id == model_id, Batch.status == BatchStatus.RUNNING
        )
        for batch_id in list(session.scalars(running)):
            refresh_batch(session, batch_id)
    return labelled


def _skip_damaged(exc: Exception, tracks: int) -> None:
    log.warning("skipped %s (%d tracks not labelled)", exc, tracks)


def _running_label_jobs(session: Session, model_id: int, track_ids: Sequence[int] | None) -> Any:
    running = select(Batch.id).where(
        Batch.model_id == model_id, Batch.status == BatchStatus.RUNNING
    )
    query = select(Job).where(
        Job.kind == JobKind.LABEL, Job.status == JobStatus.QUEUED, Job.batch_id.in_(running)
    )
    if track_ids is not None:
        query = query.where(Job.track_id.in_(list(track_ids)))
    return query.order_by(Job.id).with_for_update()


def finish_label_jobs(session: Session, model_id: int, track_ids: Sequence[int]) -> None:
    """Mark done the label jobs of running batches that ``model_id`` has now labelled
    (called in the transaction that stores the predictions), and close finished batches."""
    jobs = list(session.scalars(_running_label_jobs(session, model_id, track_ids)))
    for job in jobs:
        job.status, job.error, job.finished_at = JobStatus.DONE, None, utcnow()
    session.flush()
    for batch_id in sorted({job.batch_id for job in jobs}):
        refresh_batch(session, batch_id)


def count_label_failure(
    session: Session, model_id: int, track_ids: Sequence[int] | None, reason: str
) -> None:
    """One more failed try for these label jobs; those at MAX_LABEL_ATTEMPTS fail."""
    jobs = list(session.scalars(_running_label_jobs(session, model_id, track_ids)))
    worn = []
    for job in jobs:
        job.attempts += 1
        if job.attempts >= MAX_LABEL_ATTEMPTS:
            job.status, job.error, job.finished_at = JobStatus.FAILED, reason[:300], utcnow()
            worn.append(job.batch_id)
    session.flush()
    for batch_id in sorted(set(worn)):
        refresh_batch(session, batch_id)


def fail_label_jobs(
    session: Session, batch_ids: Sequence[int], track_ids: Sequence[int], reason: str
) -> None:
    for batch_id in batch_ids:
        move_jobs(session, batch_id, JobKind.LABEL, track_ids, to=JobStatus.FAILED, error=reason)
        refresh_batch(session, batch_id)


def finish_here(
    settings: Settings,
    batch_id: int,
    on_progress: Callable[[BatchCounts], None],
    run: Callable[[Settings, TaskCall], Any] = run_here,
) -> None:
    """Embedded mode, after the featurize chunks: label what is still ready to be labelled
    (tracks whose features were there already, or whose labelling failed in a chunk) with
    ``run`` (here, or in the warm worker). Bounded: each round counts a failure against the
    jobs it could not label."""
    from scheduler.batches import count_jobs

    for _round in range(MAX_LABEL_ATTEMPTS):
        with session_scope(settings) as session:
            calls = label_calls(session, batch_id)
        if not calls:
            return
        for call in calls:
            try:
                run(settings, call)
            except Exception as exc:  # counted against the jobs by label_stage
                log.warning("labelling failed (%s); tried again up to three times", exc)
            with session_scope(settings) as session:
                on_progress(count_jobs(session, batch_id))


def start_labelling(session: Session, model: Model, *, relabel: bool = False) -> int:
    """Add a batch (kind ``label``) that labels the library with ``model``: every featurized
    track it has not labelled (all of them with ``relabel``); returns its id. Its calls are
    ``label_calls`` of the batch, to send (or run here) once the caller has committed."""
    from scheduler.labelling import plan_labelling

    plan = plan_labelling(session, model, relabel=relabel)
    # Tracks held back by a damaged shard get a job too: label_calls fails it, saying why.
    tracks = sorted({t for ids in plan.by_shard.values() for t in ids} | set(plan.held))
    batch = Batch(kind="label", roots=[], total=0, model_id=model.id, feature_sets=[])
    session.add(batch)
    session.flush()
    add_jobs(session, batch.id, JobKind.LABEL, tracks)
    if not tracks:
        batch.status, batch.finished_at = BatchStatus.DONE, utcnow()
    return batch.id


def stage_of(featurize: str | None, label: str | None) -> str:
    """Where a track of a batch is: ``featurizing``, ``labelling``, ``done`` or ``failed``
    (``cancelled``), from its two jobs' statuses (None: no such job)."""
    for status in (featurize, label):
        if status in (JobStatus.FAILED, JobStatus.CANCELLED):
            return str(status)
    if featurize == JobStatus.QUEUED:
        return "featurizing"
    if label == JobStatus.QUEUED:
        return "labelling"
    return "done"
