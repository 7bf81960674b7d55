"""Small commands: status, config, db."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import func, select

from cli.app import Context, emit_json, json_option, pass_context
from db.engine import session_scope
from db.models import Batch, Segment, Shard, Track
from genrectl.settings import Settings


@click.command()
@json_option
@pass_context
def status(obj: Context, as_json: bool) -> None:
    """What is in the library: tracks by status, shards, segments, the last batch, the
    stages of running batches and training jobs; in distributed mode also the depth of each
    queue, the live workers per queue, the cluster's last reconcile and gc, and a warning
    when a queue has work and no worker.

    \b
    Example:
      genrectl status --json
    """
    from scheduler.status import pipeline_status

    settings = obj.ready_settings()
    report = library_status(settings)
    report.update(pipeline_status(settings))
    if settings.embedded:
        report["warm_worker"] = _warm_worker(settings)
    if not settings.embedded:
        from scheduler.cluster import cluster_report

        report["cluster"] = cluster_report(settings)
    if as_json:
        emit_json(report)
        return
    from cli.render import stdout, table

    tracks = report["tracks"]
    rows = [(k, v) for k, v in tracks.items()] + [
        ("shards", report["shards"]),
        ("segments", report["segments"]),
        ("mode", report["mode"]),
    ]
    stdout().print(table(["", "count"], rows, title="genrectl library"))
    batch = report["last_batch"]
    if batch:
        b = batch
        click.echo(
            f"Last batch #{b['id']} ({b['status']}): {b['done']}/{b['total']} done, "
            f"{b['failed']} failed, {b['unchanged']} unchanged, started {b['created_at']}"
        )
        if b["stop_reason"]:
            click.echo(f"  stopped: {b['stop_reason']}")
    if report["damaged_shards"]:
        n = report["damaged_shards"]
        click.echo(
            f"{n} damaged shard{'s' if n != 1 else ''}: their tracks are skipped; "
            "`genrectl verify --repair` rebuilds them"
        )
    _print_pipeline(report)
    if report.get("warm_worker"):
        warm = report["warm_worker"]
        state = "working" if warm["busy"] else f"idle {warm['idle_s']:.0f} s"
        click.echo(
            f"Warm worker: pid {warm['pid']}, {state} "
            f"(exits after {warm['warm_seconds']} s idle; GENRECTL_WARM_SECONDS)"
        )
    if "cluster" in report:
        _print_cluster(report["cluster"])
        _print_housekeeping(report["housekeeping"])


def _warm_worker(settings: Settings) -> dict[str, Any] | None:
    """The warm worker of this home and installation (scheduler.warm), if one runs."""
    import time

    from scheduler.warm import running_worker

    found = running_worker(settings)
    if found is None:
        return None
    idle = 0.0 if found.get("busy") else max(0.0, time.time() - float(found["idle_since"]))
    return {
        "pid": found["pid"],
        "busy": bool(found.get("busy")),
        "idle_s": round(idle, 1),
        "warm_seconds": found["warm_seconds"],
    }


def _print_pipeline(report: dict[str, Any]) -> None:
    for batch in report["running_batches"]:
        stages = "; ".join(
            f"{stage} {c['done']}/{c['total']} done, {c['queued']} queued, {c['failed']} failed"
            for stage, c in batch["stages"].items()
            if c["total"]
        )
        click.echo(f"Running batch #{batch['id']} ({batch['kind']}): {stages or 'closing'}")
    for job in report["training_jobs"]:
        progress = job["progress"] or {}
        where = f", epoch {progress['epoch']}/{progress['epochs']}" if "epoch" in progress else ""
        stale = " (its worker stopped: reconcile sends it again)" if job["stale"] else ""
        click.echo(f"Training job #{job['id']} {job['name']}: {job['status']}{where}{stale}")


def _print_cluster(cluster: dict[str, Any]) -> None:
    if cluster["error"]:
        click.echo(f"Broker: {cluster['error']}")
        return
    queues = ", ".join(
        f"{name} {depth} waiting ({cluster['workers_per_queue'].get(name, 0)} workers)"
        for name, depth in cluster["queues"].items()
    )
    click.echo(f"Queues ({cluster['broker']}): {queues}; {cluster['in_flight']} in flight")
    if not cluster["workers"]:
        click.echo("Workers: none live. Start one with `genrectl worker --queues cpu` (or gpu).")
    for item in cluster["workers"]:
        click.echo(f"Worker {item['name']}: {','.join(item['queues'])}")
    for warning in cluster["warnings"]:
        click.echo(f"warning: {warning}")


def _print_housekeeping(runs: dict[str, Any]) -> None:
    if not runs:
        click.echo("Housekeeping: no periodic reconcile or gc has run yet (a worker runs them).")
    for name, run in runs.items():
        click.echo(f"Last periodic {name}: {run['ran_at'] or 'never'} by {run['holder']}")


def library_status(settings: Settings) -> dict[str, Any]:
    with session_scope(settings) as session:
        by_status = dict(
            session.execute(select(Track.status, func.count()).group_by(Track.status)).all()
        )
        batch = session.scalar(select(Batch).order_by(Batch.id.desc()).limit(1))
        return {
            "mode": "embedded" if settings.embedded else "distributed",
            "tracks": {
                "total": sum(by_status.values()),
                **{str(k): v for k, v in by_status.items()},
            },
            "shards": session.scalar(select(func.count()).select_from(Shard)),
            "damaged_shards": session.scalar(
                select(func.count()).select_from(Shard).where(Shard.damaged.is_not(None))
            ),
            "segments": session.scalar(select(func.count()).select_from(Segment)),
            "last_batch": None
            if batch is None
            else {
                "id": batch.id,
                "status": batch.status,
                "total": batch.total,
                "done": batch.done,
                "failed": batch.failed,
                "unchanged": batch.unchanged,
                "missing": batch.missing,
                "stop_reason": batch.stop_reason,
                "created_at": batch.created_at.isoformat(timespec="seconds"),
            },
        }


@click.command()
@json_option
@pass_context
def config(obj: Context, as_json: bool) -> None:
    """Print the effective settings (passwords in URLs are masked).

    \b
    Example:
      GENRECTL_HOME=/tmp/g genrectl config
    """
    values = obj.settings.public()
    if as_json:
        emit_json(values)
        return
    width = max(len(k) for k in values)
    for key, value in values.items():
        click.echo(f"{key.ljust(width)}  {value}")


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@pass_context
def db_upgrade(obj: Context) -> None:
    """Create or migrate the database schema to the newest version, and register and
    promote the bundled starter model if no model is registered yet (unless
    GENRECTL_STARTER_MODEL=0), so the cluster can label from the first batch.

    \b
    Example:
      GENRECTL_DATABASE_URL=postgresql+psycopg://genrectl@db/genrectl genrectl db upgrade
    """
    from db.migrate import head_revision, prepare

    changed, starter = prepare(obj.settings)
    click.echo(f"database {'upgraded to' if changed else 'already at'} revision {head_revision()}")
    if starter:
        click.echo(f"registered and promoted the bundled starter model {starter}")


@click.command()
@click.option(
    "--queues",
    "-Q",
    default="cpu",
    show_default=True,
    help="Comma-separated queues to consume: cpu, gpu.",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    help="Pool processes. cpu: default one per core. gpu: default (and at most) one per "
    "visible GPU.",
)
@click.option("--loglevel", default="INFO", show_default=True)
@pass_context
def worker(obj: Context, queues: str, concurrency: int | None, loglevel: str) -> None:
    """Run a Celery worker consuming the given queues (distributed mode).

    A cpu worker runs a prefork pool (featurizing). A gpu worker runs one process per GPU
    (inference, training), each pinned to its GPU; CUDA is never initialised before the
    fork. Stop it with SIGTERM (Ctrl-C): it finishes the running task first.

    \b
    Examples:
      GENRECTL_BROKER_URL=redis://queue:6379/0 genrectl worker --queues cpu -c 8
      GENRECTL_BROKER_URL=redis://queue:6379/0 genrectl worker --queues gpu
    """
    import os

    from genrectl.errors import ConfigError
    from scheduler.workers import run_worker

    if obj.settings.embedded:
        raise ConfigError("a worker needs a broker: set GENRECTL_BROKER_URL=redis://host:6379/0")
    run_worker(
        obj.settings, queues=queues, concurrency=concurrency, loglevel=loglevel, env=os.environ
    )
