"""Housekeeping inside the cluster: the periodic reconcile and gc, run by the workers.

Every ``genrectl worker`` runs a housekeeper thread in its main process. Every few seconds
it offers to run each periodic job whose period has come; the database hands the turn to
exactly one worker of the cluster (db.leases), which runs the job and records what it did
(``genrectl status`` shows it). So a Redis restart, a worker killed with kill -9 or a
training job whose node died heals within a period, with no command typed:

- ``reconcile`` every GENRECTL_RECONCILE_INTERVAL seconds (30): sends again the lost work
  older than GENRECTL_RECONCILE_GRACE seconds (60) that no message covers any more;
- ``gc`` every GENRECTL_GC_INTERVAL seconds (3600), with its safe defaults (files older
  than an hour, features of tracks missing for a week).

Why not Celery beat: beat is one more process that must run exactly once, and is itself the
single point of failure a healing mechanism must not have; its schedule goes through the
broker whose loss is one of the faults to heal. The workers are there whenever there is
work to heal, any one of them can do it, the lease needs nothing but the database (the
source of truth anyway), and a worker that dies mid-run loses its turn when the lease
expires. The thread lives in the worker's main process (never in a pool child: no torch
there), and it is what a worker does with its spare time: a few queries and one look at the
broker per period.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from db.engine import session_scope
from db.leases import record_run, take_lease
from genrectl.errors import GenreError
from genrectl.settings import Settings
from scheduler.celery_app import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

# The database or the broker away for a while: one line, not a traceback, every period.
OUTAGES: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, GenreError)


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    every_s: float
    run: Callable[[Settings], dict[str, Any]]


def _reconcile(settings: Settings) -> dict[str, Any]:
    from scheduler.reconcile import reconcile

    report = reconcile(settings, grace_s=settings.reconcile_grace_s, label=False)
    if report.sent:
        log.warning(
            "reconcile: lost work sent again: %d featurize, %d label items, training jobs %s",
            sum(report.requeued.values()),
            sum(report.labels.values()),
            report.training,
        )
    return report.as_dict()


def _gc(settings: Settings) -> dict[str, Any]:
    from scheduler.gc import collect_garbage

    garbage = collect_garbage(settings)
    return {
        "files": len(garbage.orphan_files) + len(garbage.temp_files),
        "shards": len(garbage.unused_shards),
        "segments": garbage.missing_segments,
        "bytes": garbage.bytes,
    }


def periodic_jobs(settings: Settings) -> list[PeriodicJob]:
    """The periodic jobs the settings turn on (an interval of 0 turns one off)."""
    jobs = [
        PeriodicJob("reconcile", settings.reconcile_interval_s, _reconcile),
        PeriodicJob("gc", settings.gc_interval_s, _gc),
    ]
    return [job for job in jobs if job.every_s > 0]


def run_due(settings: Settings, holder: str) -> list[str]:
    """Run each periodic job whose lease ``holder`` takes now; returns their names. A job
    that raises is logged and leaves its lease to expire (the next period tries again)."""
    ran = []
    for job in periodic_jobs(settings):
        with session_scope(settings) as session:
            if not take_lease(session, job.name, holder, seconds=job.every_s):
                continue
        try:
            report = job.run(settings)
        except OUTAGES as exc:  # the next period tries again
            why = _first_line(exc)
            log.warning("periodic %s failed (%s); next try in %g s", job.name, why, job.every_s)
            continue
        except Exception:  # a bug: its traceback; the next period tries again
            log.exception("periodic %s failed; next try in %g s", job.name, job.every_s)
            continue
        with session_scope(settings) as session:
            record_run(session, job.name, holder, report)
        ran.append(job.name)
    return ran


class Housekeeper:
    """The thread that offers to run the periodic jobs, twice per shortest period."""

    def __init__(self, settings: Settings, holder: str) -> None:
        self.settings, self.holder = settings, holder
        self._stop = threading.Event()
        jobs = periodic_jobs(settings)
        self.tick_s = max(0.5, min((j.every_s for j in jobs), default=0) / 2)
        self._thread = threading.Thread(target=self._loop, name="housekeeper", daemon=True)
        self.enabled = bool(jobs)

    def start(self) -> None:
        if self.enabled and not self._thread.is_alive():
            log.info("housekeeping: offering periodic jobs every %g s", self.tick_s)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        # At once, then every tick: a cluster coming back after an outage heals first thing.
        while not self._stop.is_set():
            try:
                run_due(self.settings, self.holder)
            except Exception as exc:  # the database away: try again next tick
                log.warning("housekeeping tick failed: %s", _first_line(exc))
            self._stop.wait(self.tick_s)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
