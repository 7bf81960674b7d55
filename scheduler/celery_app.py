"""The Celery application. JSON only; routing by task name to the cpu and gpu queues.

Delivery is at least once: late acks, reject on worker lost, prefetch 1. Every task is
idempotent (see DESIGN.md), so a message delivered twice costs time, never correctness.
"""

from __future__ import annotations

from typing import Any

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from celery import Celery

from genrectl.errors import ConfigError
from genrectl.settings import Settings
from scheduler.tasknames import CPU_QUEUE, ROUTES

# Longer than the longest task. Featurize and infer tasks take seconds to minutes; training
# is the long one, and it checkpoints every epoch and resumes from the last checkpoint, so
# one delivery never needs more than an epoch's worth of this window after a redelivery.
VISIBILITY_TIMEOUT_S = 6 * 3600

# Results are informative only (the database is the source of truth): keep them an hour.
RESULT_EXPIRES_S = 3600

# Errors that go away by themselves: the database or the broker restarting, a dropped
# connection, a deadlock or serialization failure (SQLAlchemy reports all of those as
# OperationalError). Anything else is a bug or bad input, and retrying would not help.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # the connection pool was exhausted for a while
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
)

# Declared on each task: exponential backoff 1, 2, 4 ... 60 s with full jitter, about
# five minutes in all, then the task fails and its jobs stay queued for `genrectl reconcile`.
RETRY_POLICY: dict[str, Any] = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 1,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 10,
}


def create_app(settings: Settings) -> Celery:
    if settings.broker_url is None:
        raise ConfigError("no broker configured: set GENRECTL_BROKER_URL=redis://host:6379/0")
    app = Celery("genrectl", broker=settings.broker_url, backend=settings.broker_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_routes=ROUTES,
        task_default_queue=CPU_QUEUE,
        task_create_missing_queues=True,
        result_expires=RESULT_EXPIRES_S,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        broker_connection_retry_on_startup=True,
        # A worker outlives a broker restart: it reconnects for as long as it takes.
        broker_connection_max_retries=None,
        # After the broker connection is lost, a running task's message can no longer be
        # acked and will be delivered again: stop the task rather than do the work twice.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        include=["worker.tasks"],
    )
    return app
