"""Training as a cluster job: take the job's row, beat its heart while training, record the
outcome. The plain function behind the ``genrectl.train`` task (gpu queue).

A job taken over from a dead worker resumes from its last checkpoint: the checkpoints live
under ``<data_dir>/checkpoints/<name>/`` on the storage every worker shares, and a run with
the same inputs continues from its last epoch (worker.training.loop.fit).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from db.engine import session_scope
from genrectl.errors import GenreError
from genrectl.settings import Settings
from scheduler import trainjobs
from worker.training.loop import EpochStats
from worker.training.runs import TrainReporter

log = logging.getLogger(__name__)


class HeartbeatReporter(TrainReporter):
    """Logs as TrainReporter does, records each epoch as the job's progress, and beats the
    job's heart every HEARTBEAT_S from a thread (an epoch can last longer than that)."""

    def __init__(self, settings: Settings, job_id: int, holder: str) -> None:
        self.settings, self.job_id, self.holder = settings, job_id, holder
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_forever, daemon=True, name="heartbeat")
        self._first_epoch: dict[str, int] = {}

    def __enter__(self) -> HeartbeatReporter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * trainjobs.HEARTBEAT_S)

    def _beat(self, progress: dict[str, Any] | None = None) -> None:
        with session_scope(self.settings) as session:
            trainjobs.beat(session, self.job_id, self.holder, progress)

    def _beat_forever(self) -> None:
        while not self._stop.wait(trainjobs.HEARTBEAT_S):
            try:
                self._beat()
            except Exception:  # the database away for a moment: the next beat may pass
                log.warning("training job %d: heartbeat failed", self.job_id, exc_info=True)

    def epoch(self, run: str, stats: EpochStats, epochs: int) -> None:
        super().epoch(run, stats, epochs)
        progress: dict[str, Any] = {"run": run, "epoch": stats.epoch, "epochs": epochs}
        if run not in self._first_epoch:
            self._first_epoch[run] = stats.epoch
            if stats.epoch > 1:  # this delivery started from a checkpoint
                progress["resumed_after"] = stats.epoch - 1
                log.info("%s: resumed from the checkpoint of epoch %d", run, stats.epoch - 1)
        self._beat(progress)


def run_train_job(settings: Settings, *, job_id: int) -> dict[str, Any]:
    """Train the job's model unless it is finished or another live worker holds it;
    returns the training summary (or why nothing was done).

    A transient error (the database restarting) gives the job back for reconcile to send
    again, which resumes from the checkpoint; any other error fails the job with the reason.
    """
    from scheduler.celery_app import TRANSIENT_ERRORS
    from worker.training.job import TrainSpec, run_training

    holder = trainjobs.worker_id()
    with session_scope(settings) as session:
        spec = trainjobs.take(session, job_id, holder)
    if spec is None:
        log.info("training job %d: finished or held by a live worker; nothing to do", job_id)
        return {"job_id": job_id, "skipped": True}
    parsed = TrainSpec.from_dict(spec)
    model_id = _registered_already(settings, parsed)
    try:
        if model_id is None:
            with HeartbeatReporter(settings, job_id, holder) as reporter:
                model_id = run_training(settings, parsed, reporter=reporter).model_id
    except TRANSIENT_ERRORS:
        with session_scope(settings) as session:
            trainjobs.release(session, job_id, holder)
        raise
    except Exception as exc:
        reason = str(exc) if isinstance(exc, GenreError) else f"{type(exc).__name__}: {exc}"
        with session_scope(settings) as session:
            trainjobs.finish(session, job_id, model_id=None, error=reason)
        raise
    with session_scope(settings) as session:
        trainjobs.finish(session, job_id, model_id=model_id, error=None)
    if parsed.promote:  # the cluster relabels the library, not the client that asked
        from scheduler.labelling import label_library

        label_library(settings, model_id, wait=False)
    return {"job_id": job_id, "model_id": model_id, "name": parsed.name}


def _registered_already(settings: Settings, spec: Any) -> int | None:
    """The model a previous delivery registered before it died, if any."""
    from sqlalchemy import select

    from db.models import Model

    with session_scope(settings) as session:
        model = session.scalar(select(Model).where(Model.name == spec.name))
        if model is not None and model.training.get("spec") == spec.to_dict():
            return model.id
    return None
