"""Entry point for worker processes: ``celery -A scheduler.worker_entry worker -Q cpu``.

This is the one place a Celery app is built at import, because the worker command needs one.
"""

from __future__ import annotations

from genrectl.settings import Settings
from scheduler.celery_app import create_app

app = create_app(Settings.from_env())
