"""Label the library with a model: which tracks, by shard; a labelling batch run through the
pipeline (scheduler.pipeline), here in embedded mode or by the cluster's gpu workers."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.models import (
    Batch,
    BatchStatus,
    Job,
    JobKind,
    JobStatus,
    Model,
    Prediction,
    Segment,
    Shard,
    Track,
    TrackStatus,
)
from genrectl.settings import Settings
from scheduler.batches import BatchCounts
from scheduler.pipeline import TaskCall, label_stage
from scheduler.tasknames import INFER_SHARD

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelPlan:
    model_id: int
    by_shard: dict[int, list[int]]  # shard id -> track ids
    previous: dict[int, str]  # track id -> genre before (for "how many changed")
    # Damaged shards (path -> why) holding rows of tracks left out of the plan, and how many.
    damaged: dict[str, str] = field(default_factory=dict)
    held: tuple[int, ...] = ()

    @property
    def held_back(self) -> int:
        return len(self.held)

    @property
    def n_tracks(self) -> int:
        return sum(len(v) for v in self.by_shard.values())

    def calls(self) -> list[TaskCall]:
        """One infer call per shard."""
        return [
            TaskCall(INFER_SHARD, {"shard_id": shard, "model_id": self.model_id, "track_ids": ids})
            for shard, ids in sorted(self.by_shard.items())
        ]


def plan_labelling(
    session: Session, model: Model, *, relabel: bool = False, outside_batches: bool = False
) -> LabelPlan:
    """Tracks featurized with every feature set the model reads that it has not labelled
    (every one with ``relabel``), by the shard of their first feature set (one infer task
    per shard). ``outside_batches`` leaves out tracks a running batch is labelling."""
    from worker.features.sets import model_feature_sets  # light: no torch

    versions = [s.version for s in model_feature_sets(model.feature_params)]
    complete = (
        select(Segment.track_id)
        .where(Segment.feature_version.in_(versions))
        .group_by(Segment.track_id)
        .having(func.count(Segment.feature_version.distinct()) == len(versions))
    )
    query = (
        select(Segment.shard_id, Segment.track_id)
        .join(Track, Track.id == Segment.track_id)
        .where(
            Track.status == TrackStatus.OK,
            Segment.feature_version == versions[0],
            Segment.track_id.in_(complete),
        )
        .distinct()
    )
    if not relabel:
        labelled = select(Prediction.track_id).where(Prediction.model_id == model.id)
        query = query.where(Segment.track_id.not_in(labelled))
    if outside_batches:
        query = query.where(Segment.track_id.not_in(_being_labelled(model.id)))
    # Tracks with rows in a damaged shard wait for `genrectl verify --repair`.
    damaged = damaged_shards(session, versions)
    held = set(session.scalars(damaged_tracks(session, versions)))
    by_shard: dict[int, list[int]] = defaultdict(list)
    held_back: set[int] = set()
    for shard_id, track_id in session.execute(query):
        if track_id in held:
            held_back.add(track_id)
        else:
            by_shard[shard_id].append(track_id)
    previous = previous_genres(session, model.id)
    return LabelPlan(model.id, dict(by_shard), previous, damaged, tuple(sorted(held_back)))


def damaged_shards(session: Session, versions: list[str]) -> dict[str, str]:
    """Damaged shards of these feature versions: path -> why."""
    return {
        path: why or ""
        for path, why in session.execute(
            select(Shard.path, Shard.damaged)
            .join(Segment)
            .where(Shard.damaged.is_not(None), Segment.feature_version.in_(versions))
            .distinct()
        )
    }


def damaged_tracks(session: Session, versions: list[str]) -> Select[Any]:
    """Tracks with rows of these feature versions in a damaged shard."""
    return (
        select(Segment.track_id)
        .join(Shard)
        .where(Shard.damaged.is_not(None), Segment.feature_version.in_(versions))
    )


def _being_labelled(model_id: int) -> Select[Any]:
    running = select(Batch.id).where(
        Batch.model_id == model_id, Batch.status == BatchStatus.RUNNING
    )
    return select(Job.track_id).where(
        Job.kind == JobKind.LABEL, Job.status == JobStatus.QUEUED, Job.batch_id.in_(running)
    )


def previous_genres(session: Session, model_id: int) -> dict[int, str]:
    """Each track's latest genre from another model than ``model_id``."""
    return dict(
        session.execute(
            select(Prediction.track_id, Prediction.genre)
            .where(Prediction.model_id != model_id)
            .order_by(Prediction.created_at)
        ).all()
    )


def run_labelling(settings: Settings, plan: LabelPlan) -> None:
    """Label the plan's tracks in this process (embedded mode), shard by shard."""
    for call in plan.calls():
        label_stage(settings, **call.kwargs)


@dataclass(frozen=True)
class Relabelling:
    batch_id: int
    model: str
    labelled: int
    changed_genre: int | None  # None while the cluster is still labelling (no wait)


def label_library(
    settings: Settings,
    model_id: int,
    *,
    relabel: bool = False,
    wait: bool = True,
    on_progress: Callable[[BatchCounts], None] = lambda _: None,
    notify: Callable[[str], None] | None = None,
    warm: bool = False,
) -> Relabelling:
    """A labelling batch for the model: every featurized track it has not labelled (all of
    them with ``relabel``). Embedded mode runs it here (in the warm worker, with ``warm``);
    distributed mode sends it to the gpu workers and, with ``wait``, follows it to the end."""
    from scheduler.pipeline import label_calls, send, start_labelling
    from scheduler.runner import run_featurize

    with session_scope(settings) as session:
        model = session.get(Model, model_id)
        assert model is not None, model_id
        name = model.name
        previous = previous_genres(session, model_id)
        batch_id = start_labelling(session, model, relabel=relabel)
    if wait or settings.embedded:
        counts = run_featurize(settings, batch_id, [], on_progress, notify, warm=warm)
        with session_scope(settings) as session:
            changed = changed_genres(session, model_id, previous)
        return Relabelling(batch_id, name, counts.label.done, changed)
    with session_scope(settings) as session:
        calls = label_calls(session, batch_id)
    send(settings, calls)
    return Relabelling(batch_id, name, sum(len(c.kwargs["track_ids"]) for c in calls), None)


def changed_genres(session: Session, model_id: int, previous: dict[int, str]) -> int:
    """How many tracks ``model_id`` labels differently from their earlier label."""
    now = dict(
        session.execute(
            select(Prediction.track_id, Prediction.genre).where(Prediction.model_id == model_id)
        ).all()
    )
    return sum(1 for tid, genre in now.items() if tid in previous and previous[tid] != genre)
