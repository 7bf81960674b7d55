"""Label the library with the promoted model: plan per shard, run locally or on the gpu queue."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.models import Model, Prediction, Segment, Shard, Track, TrackStatus
from genrectl.errors import REPAIR_HINT, ShardError
from genrectl.settings import Settings
from scheduler.tasknames import GPU_QUEUE, INFER_SHARD, resolve

log = logging.getLogger(__name__)
LabelProgress = Callable[[int, int], None]  # (tracks labelled, tracks to label)


@dataclass(frozen=True)
class LabelPlan:
    model_id: int
    by_shard: dict[int, list[int]]  # shard id -> track ids
    previous: dict[int, str]  # track id -> genre before (for "how many changed")
    # Damaged shards (path -> why) holding rows of tracks left out of the plan, and how many.
    damaged: dict[str, str] = field(default_factory=dict)
    held_back: int = 0

    @property
    def n_tracks(self) -> int:
        return sum(len(v) for v in self.by_shard.values())


def plan_labelling(session: Session, model: Model, *, relabel: bool = False) -> LabelPlan:
    """Tracks featurized with every feature set the model reads that it has not labelled,
    by the shard of their first feature set (one infer task per shard)."""
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
    # Tracks with rows in a damaged shard wait for `genrectl verify --repair`.
    in_damaged = (Shard.damaged.is_not(None), Segment.feature_version.in_(versions))
    damaged = {
        path: why or ""
        for path, why in session.execute(
            select(Shard.path, Shard.damaged).join(Segment).where(*in_damaged).distinct()
        )
    }
    held = set(session.scalars(select(Segment.track_id).join(Shard).where(*in_damaged)))
    by_shard: dict[int, list[int]] = defaultdict(list)
    held_back = set()
    for shard_id, track_id in session.execute(query):
        if track_id in held:
            held_back.add(track_id)
        else:
            by_shard[shard_id].append(track_id)
    previous = dict(
        session.execute(
            select(Prediction.track_id, Prediction.genre)
            .join(Model, Model.id == Prediction.model_id)
            .where(Model.id != model.id)
            .order_by(Prediction.created_at)
        ).all()
    )
    return LabelPlan(model.id, dict(by_shard), previous, damaged, len(held_back))


def run_labelling(
    settings: Settings,
    plan: LabelPlan,
    on_progress: LabelProgress,
    notify: Callable[[str], None] | None = None,
) -> int:
    """Label the plan's tracks; returns how many got a label (a track whose rows are in a
    shard found damaged now is skipped, and ``notify`` is told once per shard)."""
    total = plan.n_tracks
    notify = notify or log.warning
    if settings.embedded:
        infer = resolve(INFER_SHARD)
        done = 0
        told: set[str] = set()

        def damaged(exc: ShardError, tracks: int) -> None:
            if str(exc.path) not in told:  # one line per shard, however many tasks read it
                told.add(str(exc.path))
                notify(f"skipped {exc} ({tracks} tracks not labelled); {REPAIR_HINT}")

        for shard_id, track_ids in sorted(plan.by_shard.items()):
            done += infer(
                settings,
                shard_id=shard_id,
                model_id=plan.model_id,
                track_ids=track_ids,
                on_damaged=damaged,
            )
            on_progress(done, total)
        return done
    enqueue_labelling(settings, plan)
    _wait_for_labels(settings, plan, on_progress, notify)
    return total


def enqueue_labelling(settings: Settings, plan: LabelPlan) -> int:
    """One infer task per shard on the gpu queue; returns how many were sent."""
    from scheduler.runner import send_tasks

    return send_tasks(
        settings,
        INFER_SHARD,
        [
            {"shard_id": shard_id, "model_id": plan.model_id, "track_ids": track_ids}
            for shard_id, track_ids in sorted(plan.by_shard.items())
        ],
    )


def _wait_for_labels(
    settings: Settings, plan: LabelPlan, on_progress: LabelProgress, notify: Callable[[str], None]
) -> None:
    from scheduler.follow import DatabasePoll, WorkerWatch

    wanted = [t for ids in plan.by_shard.values() for t in ids]
    watch = WorkerWatch(settings, GPU_QUEUE, notify, hint="Ctrl-C is safe: `genrectl reconcile`.")
    database = DatabasePoll(notify)
    while True:
        done = database.read(lambda: _labelled(settings, plan.model_id, wanted))
        if done is not None:
            on_progress(done, plan.n_tracks)
            if done >= plan.n_tracks:
                return
            watch.observe(done)
        time.sleep(0.5)


def _labelled(settings: Settings, model_id: int, track_ids: list[int]) -> int:
    """Tracks labelled, or skipped by a worker because a shard of theirs is damaged."""
    with session_scope(settings) as session:
        labelled = select(Prediction.track_id).where(
            Prediction.model_id == model_id, Prediction.track_id.in_(track_ids)
        )
        skipped = (
            select(Segment.track_id)
            .join(Shard)
            .where(Shard.damaged.is_not(None), Segment.track_id.in_(track_ids))
        )
        count = session.scalar(select(func.count()).select_from(labelled.union(skipped).subquery()))
    return count or 0


def changed_genres(session: Session, plan: LabelPlan) -> int:
    """How many tracks the plan's model labels differently from their earlier label."""
    now = dict(
        session.execute(
            select(Prediction.track_id, Prediction.genre).where(
                Prediction.model_id == plan.model_id
            )
        ).all()
    )
    return sum(
        1 for tid, genre in now.items() if tid in plan.previous and plan.previous[tid] != genre
    )
