"""What the broker knows: queue depths, messages in flight, live workers (distributed mode).

Only the database says what work exists; Redis says what is waiting to be picked up. These
helpers read Redis directly (kombu's Redis layout: one list per queue, a hash of unacked
messages), so they answer in milliseconds and never consume anything.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from genrectl.errors import GenreError
from genrectl.settings import Settings, mask_url
from scheduler.tasknames import CPU_QUEUE, FEATURIZE_CHUNK, GPU_QUEUE, INFER_SHARD, TRAIN

log = logging.getLogger(__name__)

QUEUES = (CPU_QUEUE, GPU_QUEUE)
# kombu keeps a message with priority p > 0 in the list "<queue>\x06\x16<p>".
_PRIORITY_KEYS = ("", "\x06\x163", "\x06\x166", "\x06\x169")
_UNACKED = "unacked"  # kombu's hash of delivered, not yet acknowledged messages
PING_TIMEOUT_S = 1.0


class BrokerUnavailable(GenreError):
    """The broker (Redis) cannot be reached, or refuses messages (out of memory)."""


def broker_error(settings: Settings, exc: BaseException) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"the broker at {mask_url(settings.broker_url)} failed: {exc} "
        "(is Redis running, and not out of memory? GENRECTL_BROKER_URL)"
    )


def _client(settings: Settings) -> redis.Redis:
    if settings.broker_url is None:
        raise GenreError("no broker configured: set GENRECTL_BROKER_URL=redis://host:6379/0")
    return redis.Redis.from_url(settings.broker_url, socket_timeout=3, socket_connect_timeout=3)


def queue_depths(settings: Settings) -> dict[str, int]:
    """Messages waiting in each queue, plus ``in_flight``: delivered and not yet acked."""
    try:
        with _client(settings) as client:
            depths = {q: sum(int(client.llen(q + s)) for s in _PRIORITY_KEYS) for q in QUEUES}
            depths["in_flight"] = int(client.hlen(_UNACKED))
    except redis.exceptions.RedisError as exc:
        raise broker_error(settings, exc) from exc
    return depths


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    queues: list[str] = field(default_factory=list)


def live_workers(settings: Settings, *, timeout: float = PING_TIMEOUT_S) -> list[WorkerInfo]:
    """Workers that answer a broadcast within ``timeout`` seconds, with the queues they consume."""
    from scheduler.celery_app import create_app

    try:
        with _client(settings) as client:
            client.ping()  # fail fast: Celery's own client retries for a long while
        with create_app(settings) as app:
            replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except (redis.exceptions.RedisError, OSError) as exc:
        raise broker_error(settings, exc) from exc
    workers = [
        WorkerInfo(name, sorted(q["name"] for q in queues if "name" in q))
        for name, queues in replies.items()
    ]
    return sorted(workers, key=lambda w: w.name)


def _decode(raw: bytes | str) -> tuple[str, list[Any], dict[str, Any]] | None:
    """(task name, args, kwargs) of a JSON task message; None for anything else."""
    try:
        envelope = json.loads(raw)
        if envelope.get("content-type") != "application/json":
            return None
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, kwargs, _embed = json.loads(body)
        return str(envelope["headers"]["task"]), list(args), dict(kwargs)
    except (ValueError, KeyError, TypeError):
        return None


def _batch_of(decoded: tuple[str, list[Any], dict[str, Any]] | None) -> int | None:
    if decoded is None or decoded[0] != FEATURIZE_CHUNK:
        return None
    _name, args, kwargs = decoded
    batch_id = args[0] if args else kwargs.get("batch_id")
    return batch_id if type(batch_id) is int else None


def queued_messages(
    settings: Settings, queue: str
) -> Iterator[tuple[str, list[Any], dict[str, Any]]]:
    """(task name, args, kwargs) of each JSON task message waiting in ``queue``."""
    with _client(settings) as client:
        raws = [raw for suffix in _PRIORITY_KEYS for raw in client.lrange(queue + suffix, 0, -1)]
    for raw in raws:
        decoded = _decode(raw)
        if decoded is not None:
            yield decoded


def remove_batch_messages(settings: Settings, batch_id: int) -> int:
    """Take the batch's waiting featurize messages off the cpu queue; returns how many.

    A message a worker already took is not affected; its jobs are marked in the database,
    which the task checks before doing anything.
    """
    removed = 0
    try:
        with _client(settings) as client:
            for key in (CPU_QUEUE + suffix for suffix in _PRIORITY_KEYS):
                for raw in client.lrange(key, 0, -1):
                    if _batch_of(_decode(raw)) == batch_id:
                        # LREM of the exact bytes: atomic, and a no-op if a worker took it.
                        removed += int(client.lrem(key, 1, raw))
    except redis.exceptions.RedisError as exc:
        raise broker_error(settings, exc) from exc
    return removed


@dataclass
class HeldWork:
    """The work that messages still cover: waiting in a queue, or held (running or
    prefetched) by a live worker. What the database says is unfinished and no message
    covers is lost, and reconcile sends it again."""

    featurize: set[tuple[int, int]] = field(default_factory=set)  # (batch id, track id)
    label: set[tuple[int, int]] = field(default_factory=set)  # (model id, track id)
    train: set[int] = field(default_factory=set)  # training job ids

    def add(self, name: str, kwargs: dict[str, Any]) -> None:
        tracks = [t for t in kwargs.get("track_ids") or [] if type(t) is int]
        key = {FEATURIZE_CHUNK: "batch_id", INFER_SHARD: "model_id", TRAIN: "job_id"}.get(name)
        owner = kwargs.get(key) if key else None
        if type(owner) is not int:
            return
        if name == FEATURIZE_CHUNK:
            self.featurize.update((owner, t) for t in tracks)
        elif name == INFER_SHARD:
            self.label.update((owner, t) for t in tracks)
        else:
            self.train.add(owner)


def held_work(settings: Settings) -> HeldWork:
    """What the queues and the live workers hold (raises BrokerUnavailable).

    The queues are read before the workers are asked, so a message a worker takes in
    between is seen at least once."""
    from scheduler.celery_app import create_app

    held = HeldWork()
    try:
        for queue in QUEUES:
            for name, _args, kwargs in queued_messages(settings, queue):
                held.add(name, kwargs)
        workers = [w.name for w in live_workers(settings)]
        if not workers:
            return held
        with create_app(settings) as app:
            inspect = app.control.inspect(
                destination=workers, timeout=PING_TIMEOUT_S, limit=len(workers)
            )
            replies = [inspect.active() or {}, inspect.reserved() or {}]
    except (redis.exceptions.RedisError, OSError) as exc:
        raise broker_error(settings, exc) from exc
    for reply in replies:
        for requests in reply.values():
            for request in requests:
                if isinstance(request.get("kwargs"), dict):
                    held.add(str(request.get("name")), request["kwargs"])
    return held


def cluster_report(settings: Settings) -> dict[str, Any]:
    """Queue depths, live workers (also counted per queue) and warnings, for ``genrectl
    status``; never raises on a dead broker."""
    report: dict[str, Any] = {
        "broker": mask_url(settings.broker_url),
        "queues": {},
        "in_flight": None,
        "workers": [],
        "workers_per_queue": {},
        "warnings": [],
        "error": None,
    }
    try:
        depths = queue_depths(settings)
        report["in_flight"] = depths.pop("in_flight")
        report["queues"] = depths
        workers = live_workers(settings)
    except BrokerUnavailable as exc:
        report["error"] = str(exc)
        return report
    report["workers"] = [{"name": w.name, "queues": w.queues} for w in workers]
    per_queue = {q: sum(q in w.queues for w in workers) for q in QUEUES}
    report["workers_per_queue"] = per_queue
    for queue, depth in depths.items():
        if depth and not per_queue.get(queue):
            report["warnings"].append(
                f"the {queue!r} queue holds {depth} messages and no live worker consumes it: "
                f"start one with `genrectl worker --queues {queue}`"
            )
    return report
