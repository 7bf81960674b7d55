"""The Celery application. JSON only; routing by task name to the cpu and gpu queues."""

from __future__ import annotations

from celery import Celery

from genrectl.errors import ConfigError
from genrectl.settings import Settings
from scheduler.tasknames import CPU_QUEUE, ROUTES

# Longer than the longest task: a training epoch checkpoints well inside this, so a
# redelivered training task resumes from its last epoch instead of starting over.
VISIBILITY_TIMEOUT_S = 6 * 3600


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
        result_expires=24 * 3600,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        include=["worker.tasks"],
    )
    return app
