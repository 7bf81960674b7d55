"""``genrectl jobs list|show|retry|cancel`` and ``genrectl reconcile``: batches as operations."""

from __future__ import annotations

from typing import Any

import click

from cli.app import Context, emit_json, json_option, pass_context
from db.engine import session_scope
from genrectl.errors import ConfigError
from genrectl.settings import Settings
from scheduler.batches import chunked

STATUSES = ("running", "done", "cancelled", "interrupted")


@click.group()
def jobs() -> None:
    """Batches of work (one per `genrectl ingest`) and their items."""


@jobs.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only batches in this state.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@json_option
@pass_context
def jobs_list(obj: Context, status: str | None, limit: int, as_json: bool) -> None:
    """The newest batches with their counters (counted from the database).

    \b
    Example:
      genrectl jobs list --status running
    """
    from scheduler.jobs import list_batches

    with session_scope(obj.ready_settings()) as session:
        rows = list_batches(session, limit=limit, status=status)
    if as_json:
        emit_json(rows)
        return
    from cli.render import stdout, table

    columns = [
        "id",
        "kind",
        "status",
        "total",
        "done",
        "failed",
        "featurizing",
        "labelling",
        "cancelled",
        "created_at",
    ]
    stdout().print(table(columns, [[r[c] for c in columns] for r in rows], title="batches"))


@jobs.command("show")
@click.argument("batch_id", type=int)
@json_option
@pass_context
def jobs_show(obj: Context, batch_id: int, as_json: bool) -> None:
    """One batch: its counters, its failed items with reasons, its unfinished items.

    \b
    Example:
      genrectl jobs show 12 --json | jq '.failed_items[].reason'
    """
    from scheduler.jobs import show_batch

    with session_scope(obj.ready_settings()) as session:
        report = show_batch(session, batch_id)
    if as_json:
        emit_json(report)
        return
    _print_batch(report)


def _print_batch(report: dict[str, Any]) -> None:
    echo = click.echo
    echo(
        f"Batch #{report['id']} ({report['kind']}, {report['status']}): "
        f"{report['done']}/{report['total']} done, {report['failed']} failed, "
        f"{report['featurizing']} featurizing, {report['labelling']} labelling, "
        f"{report['cancelled']} cancelled"
    )
    for stage, counts in report["stages"].items():
        if counts["total"]:
            echo(
                f"  {stage:<9}  {counts['done']}/{counts['total']} done, {counts['failed']} "
                f"failed, {counts['queued']} queued, {counts['cancelled']} cancelled"
            )
    echo(f"  started {report['created_at']}, finished {report['finished_at'] or '-'}")
    if report["stop_reason"]:
        echo(f"  stopped: {report['stop_reason']}")
    for item in report["failed_items"]:
        echo(f"  failed  {item['path']} ({item['stage']}): {item['reason']}")
    for item in report["queued_items"]:
        why = f"; waits: {item['reason']}" if item.get("reason") else ""
        echo(f"  {item['stage']:<11} {item['path']} ({item['attempts']} attempts so far{why})")


@jobs.command("retry")
@click.argument("batch_id", type=int)
@click.option("--no-wait", is_flag=True, help="Enqueue and return (distributed mode).")
@json_option
@pass_context
def jobs_retry(obj: Context, batch_id: int, no_wait: bool, as_json: bool) -> None:
    """Queue the batch's failed items again (only those) and run them.

    \b
    Example:
      genrectl jobs retry 12
    """
    from scheduler.jobs import reopen_failed
    from scheduler.liveness import hold_run_lock

    settings = obj.ready_settings()
    _check_no_wait(settings, no_wait)
    lock = hold_run_lock(settings) if settings.embedded else None
    try:
        with session_scope(settings) as session:
            track_ids = reopen_failed(session, batch_id, owner=lock.owner if lock else None)
        result: dict[str, Any] = {"batch_id": batch_id, "retried": len(track_ids)}
        if track_ids:
            result.update(_featurize(obj, settings, batch_id, track_ids, no_wait, quiet=as_json))
    finally:
        if lock is not None:
            lock.release()
    if as_json:
        emit_json(result)
    elif not track_ids:
        click.echo(f"Batch #{batch_id} has no failed items.")
    else:
        click.echo(f"Batch #{batch_id}: {len(track_ids)} failed items queued again.")


def _check_no_wait(settings: Settings, no_wait: bool) -> None:
    if no_wait and settings.embedded:
        raise ConfigError("--no-wait needs distributed mode (GENRECTL_BROKER_URL)")


def _featurize(
    obj: Context,
    settings: Settings,
    batch_id: int,
    track_ids: list[int],
    no_wait: bool,
    *,
    quiet: bool,
) -> dict[str, Any]:
    from scheduler import pipeline
    from scheduler.batches import queued_track_ids
    from scheduler.runner import enqueue_featurize, run_featurize

    with session_scope(settings) as session:
        featurize = queued_track_ids(session, batch_id, track_ids)
    chunks = list(chunked(featurize, settings.chunk_size))
    if no_wait:
        sent = enqueue_featurize(settings, batch_id, chunks)
        with session_scope(settings) as session:
            ready = pipeline.label_calls(session, batch_id)
        pipeline.send(settings, ready)
        return {"chunks": sent}
    from cli.render import batch_progress

    with batch_progress(quiet=obj.quiet or quiet) as bar:
        counts = run_featurize(settings, batch_id, chunks, bar, _notify)
    return {"done": counts.done, "failed": counts.failed}


def _notify(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


@jobs.command("cancel")
@click.argument("batch_id", type=int)
@json_option
@pass_context
def jobs_cancel(obj: Context, batch_id: int, as_json: bool) -> None:
    """Cancel a batch: its queued items are marked cancelled and taken off the queue.

    An item a worker is featurizing right now is not recorded.

    \b
    Example:
      genrectl jobs cancel 12
    """
    from scheduler.jobs import cancel_queued

    settings = obj.ready_settings()
    with session_scope(settings) as session:
        cancelled = cancel_queued(session, batch_id)
    removed = 0
    if not settings.embedded and cancelled:
        from scheduler.cluster import remove_batch_messages

        removed = remove_batch_messages(settings, batch_id)
    if as_json:
        emit_json({"batch_id": batch_id, "cancelled": cancelled, "messages_removed": removed})
        return
    click.echo(
        f"Batch #{batch_id}: {cancelled} items cancelled"
        + (f", {removed} queued messages removed." if removed else ".")
    )


@click.command()
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=120.0,
    show_default=True,
    help="Leave batches younger than this many seconds alone (their ingest may still be "
    "enqueueing).",
)
@click.option("--no-label", is_flag=True, help="Do not send missing labels to inference.")
@click.option(
    "--everything",
    is_flag=True,
    help="Send all unfinished work again, even what a queue or a live worker still holds.",
)
@json_option
@pass_context
def reconcile(obj: Context, grace: float, no_label: bool, everything: bool, as_json: bool) -> None:
    """Send again the work the database says is unfinished and no message covers.

    Recovers messages lost to a Redis restart or flush, or held by a worker that died:
    featurize and label jobs of running batches older than --grace, and training jobs
    whose worker died (they resume from their last checkpoint). Work still waiting in a
    queue or running on a live worker is left alone. Every featurized track the promoted
    model has not labelled goes to inference too. The cluster runs this by itself every
    GENRECTL_RECONCILE_INTERVAL seconds; the command is for operators.

    \b
    Examples:
      genrectl reconcile --grace 0
      genrectl reconcile --everything --json
    """
    from scheduler.reconcile import reconcile as run_reconcile

    settings = obj.ready_settings()
    report = run_reconcile(
        settings, grace_s=grace, label=not no_label, everything=everything
    ).as_dict()
    if as_json:
        emit_json(report)
        return
    click.echo(
        f"Reconciled: {report['requeued_items']} featurize items of {len(report['requeued'])} "
        f"batches enqueued again in {report['chunks']} chunks, {report['label_items']} label "
        f"items, {len(report['training'])} training jobs; {len(report['closed'])} finished "
        f"batches closed; {report['labelling']} tracks outside batches sent to labelling."
    )
