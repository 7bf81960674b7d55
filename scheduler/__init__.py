"""Scheduling: the Celery app, queues and routing, batch orchestration, the embedded runner."""
