"""What the pipeline is doing, from the database: running batches by stage, training jobs,
and the cluster's last periodic runs (``genrectl status``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from db.engine import session_scope
from db.leases import lease_reports
from db.models import Batch, BatchStatus, TrainJob, TrainStatus
from genrectl.settings import Settings
from scheduler.batches import count_jobs
from scheduler.trainjobs import describe


def pipeline_status(settings: Settings, *, limit: int = 10) -> dict[str, Any]:
    with session_scope(settings) as session:
        batches = session.scalars(
            select(Batch)
            .where(Batch.status == BatchStatus.RUNNING)
            .order_by(Batch.id.desc())
            .limit(limit)
        ).all()
        training = session.scalars(
            select(TrainJob)
            .where(TrainJob.status.in_([TrainStatus.QUEUED, TrainStatus.RUNNING]))
            .order_by(TrainJob.id)
        ).all()
        return {
            "running_batches": [
                {"id": b.id, "kind": b.kind, "stages": count_jobs(session, b.id).stages()}
                for b in sorted(batches, key=lambda b: b.id)
            ],
            "training_jobs": [describe(job) for job in training],
            "housekeeping": lease_reports(session),
        }
