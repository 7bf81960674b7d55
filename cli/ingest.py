"""``genrectl ingest``: scan, plan a batch, featurize it, report."""

from __future__ import annotations

import os
import shlex
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from cli.app import EXIT_FAILURES, Context, emit_json, json_option, pass_context
from cli.batchrun import BatchRun
from db.engine import session_scope
from db.models import Job, JobKind, JobStatus, Track
from genrectl.errors import ConfigError
from genrectl.settings import Settings
from scheduler.batches import IngestPlan, chunked, plan_ingest
from scheduler.liveness import RunLock, hold_run_lock
from scheduler.scan import ScanResult, scan

if TYPE_CHECKING:
    from worker.features.sets import FeatureSet


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--retry-failed", is_flag=True, help="Try again files that failed before.")
@click.option("--strict", is_flag=True, help="Exit with status 4 if any file failed.")
@click.option(
    "--no-wait",
    is_flag=True,
    help="Distributed mode: enqueue the batch, print its id and return at once.",
)
@json_option
@pass_context
def ingest(
    obj: Context,
    paths: tuple[Path, ...],
    retry_failed: bool,
    strict: bool,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Add the music under PATHS to the library.

    Every new or changed audio file is decoded once into the features the promoted model
    reads, stored in HDF5 shards, then labelled with that model. Unchanged files (same size
    and mtime) are not read again; files that disappeared are marked missing. One bad file
    fails alone. In distributed mode the workers do both stages; --no-wait leaves them to it.

    \b
    Examples:
      genrectl ingest ~/Music
      genrectl ingest ~/Music /mnt/nas/flac --json
      genrectl ingest /music --no-wait     # then: genrectl jobs show ID
    """
    if obj.settings.embedded and not no_wait:
        _start_warm_worker(obj.settings)
    settings = obj.ready_settings()
    if no_wait and settings.embedded:
        raise ConfigError("--no-wait needs distributed mode: set GENRECTL_BROKER_URL")
    started = time.monotonic()
    roots = [_root(p) for p in paths]
    lock = hold_run_lock(settings) if settings.embedded else None
    try:
        found, plan, sets, previous = _scan_and_plan(obj, settings, roots, retry_failed, lock)
        slots = settings.workers if settings.embedded else 1
        chunks = list(chunked(plan.track_ids, settings.chunk_size, slots=slots))
        if no_wait:
            _enqueue_only(settings, plan, chunks, as_json=as_json)
            return
        again = "genrectl ingest " + " ".join(shlex.quote(r) for r in roots)
        run = BatchRun(settings, plan, again, quiet=obj.quiet or as_json, as_json=as_json)
        with run.stops():
            run.featurize_and_label(chunks, sets)
    finally:
        if lock is not None:
            lock.release()
    report = _report(settings, plan, found, time.monotonic() - started)
    report["labelling"] = _labelling(settings, plan.batch_id, previous)
    if as_json:
        emit_json(report)
    else:
        _print_report(report, quiet=obj.quiet)
    run.raise_if_deferred()
    if strict and report["failed"]:
        sys.exit(EXIT_FAILURES)


def _start_warm_worker(settings: Settings) -> None:
    """Start the warm worker first thing (unless one runs): it imports torch and builds the
    encoders while this process migrates, scans and plans, and takes the first chunk."""
    from scheduler.warm import warm_client

    client = warm_client(settings)
    if client is not None:
        client.start()


def _scan_and_plan(
    obj: Context, settings: Settings, roots: list[str], retry_failed: bool, lock: RunLock | None
) -> tuple[ScanResult, IngestPlan, list[FeatureSet], dict[int, str]]:
    """Scan the roots and commit the batch (its tracks and queued jobs) before any work.
    Also returns the feature sets, and each track's genre before (from other models)."""
    from cli.render import stderr
    from scheduler.labelling import previous_genres
    from worker.features.sets import feature_set_from_dict

    with stderr().status("Scanning…", spinner="dots") if not obj.quiet else nullcontext():
        found = scan(Path(r) for r in roots)
    with session_scope(settings) as session:
        feature_sets, model_id = _batch_model(session, settings)
        plan = plan_ingest(
            session,
            found,
            roots=roots,
            feature_sets=feature_sets,
            model_id=model_id,
            retry_failed=retry_failed,
            owner=lock.owner if lock is not None else None,
        )
        previous = previous_genres(session, model_id) if model_id is not None else {}
    sets = [feature_set_from_dict(d) for d in feature_sets.values()]
    return found, plan, sets, previous


def _batch_model(
    session: Session, settings: Settings
) -> tuple[dict[str, dict[str, Any]], int | None]:
    """What a batch computes: the promoted model's features, and the model to label with
    (the starter, registered on first use); the reference mel when there is no model."""
    from db.registry import ensure_starter
    from worker.features.mel import FeatureParams  # light dataclass modules: no torch
    from worker.features.sets import model_feature_sets

    model = ensure_starter(session, settings)
    sets = model_feature_sets(model.feature_params) if model is not None else [FeatureParams()]
    return {s.version: s.to_dict() for s in sets}, None if model is None else model.id


def warn(message: str) -> None:
    """A warning while following work (no live worker, database away): one line on stderr."""
    click.echo(f"warning: {message}", err=True)


def _enqueue_only(
    settings: Settings, plan: IngestPlan, chunks: list[list[int]], *, as_json: bool
) -> None:
    """--no-wait: the batch is committed; send its chunks (and the labelling of tracks
    featurized before) and say how to follow it. The workers do the rest."""
    from scheduler import pipeline
    from scheduler.runner import enqueue_featurize

    sent = enqueue_featurize(settings, plan.batch_id, chunks) if chunks else 0
    with session_scope(settings) as session:
        ready = pipeline.label_calls(session, plan.batch_id)
    pipeline.send(settings, ready)
    if as_json:
        emit_json(
            {
                "batch_id": plan.batch_id,
                "queued": len(plan.track_ids),
                "chunks": sent,
                "to_label": len(plan.label_only),
            }
        )
        return
    click.echo(
        f"Batch #{plan.batch_id}: {len(plan.track_ids)} tracks queued in {sent} chunks "
        f"({plan.unchanged} unchanged"
        + (f", {len(plan.label_only)} of them to label" if plan.label_only else "")
        + "). The workers featurize and label it; follow it with "
        f"`genrectl jobs show {plan.batch_id}`."
    )


def _labelling(settings: Settings, batch_id: int, previous: dict[int, str]) -> dict[str, Any]:
    """What the batch's label stage did, for the report."""
    from db.models import Batch, Model
    from scheduler.batches import count_jobs
    from scheduler.labelling import changed_genres

    with session_scope(settings) as session:
        batch = session.get(Batch, batch_id)
        model = session.get(Model, batch.model_id) if batch and batch.model_id else None
        if model is None:
            return {"model": None, "labelled": 0, "note": NO_MODEL}
        label = count_jobs(session, batch_id).label
        return {
            "model": model.name,
            "labelled": label.done,
            "label_failed": label.failed,
            "changed_genre": changed_genres(session, model.id, previous),
        }


NO_MODEL = "no model is promoted: run `genrectl models list`"


def _root(path: Path) -> str:
    expanded = Path(os.path.expanduser(str(path)))
    if not expanded.exists():
        raise click.BadParameter(f"'{path}' does not exist", param_hint="PATHS")
    return os.path.abspath(expanded)


def _report(
    settings: Settings, plan: IngestPlan, found: ScanResult, seconds: float
) -> dict[str, Any]:
    with session_scope(settings) as session:
        rows = session.execute(
            select(Track.path, Job.status, Job.error)
            .join(Job, Job.track_id == Track.id)
            .where(Job.batch_id == plan.batch_id, Job.kind == JobKind.FEATURIZE)
        ).all()
    failed = [{"path": p, "reason": e} for p, s, e in rows if s == JobStatus.FAILED]
    return {
        "batch_id": plan.batch_id,
        "seconds": round(seconds, 2),
        "scanned": len(found.files),
        "new": plan.new,
        "changed": plan.changed,
        "new_features": plan.features,
        "unchanged": plan.unchanged,
        "previously_failed": plan.previously_failed,
        "featurized": sum(1 for _, s, _ in rows if s == JobStatus.DONE),
        "failed": sorted(failed, key=lambda f: f["path"]),
        "missing": plan.missing,
        "ignored_non_audio": found.ignored,
        "problems": [{"path": p, "reason": r} for p, r in found.problems],
    }


def _print_report(report: dict[str, Any], *, quiet: bool) -> None:
    echo = click.echo
    if not report["new"] and not report["changed"] and not report["new_features"]:
        echo(
            f"Nothing to decode: {report['unchanged']} tracks unchanged"
            + (
                f", {report['previously_failed']} failed before (--retry-failed to try again)"
                if report["previously_failed"]
                else ""
            )
            + "."
        )
    else:
        features = report["new_features"]
        echo(
            f"Ingested {report['scanned']} files in {report['seconds']:.1f} s: "
            f"{report['new']} new, {report['changed']} changed, "
            + (f"{features} given the promoted model's features, " if features else "")
            + f"{report['unchanged']} unchanged, "
            f"{report['featurized']} featurized, {len(report['failed'])} failed."
        )
    for item in report["failed"]:
        echo(f"  failed  {item['path']}: {item['reason']}")
    for item in report["problems"]:
        echo(f"  skipped {item['path']}: {item['reason']}")
    labelling = report["labelling"]
    if labelling["model"] is None:
        echo(f"Not labelled: {labelling['note']}.")
    elif labelling["labelled"] or labelling["label_failed"]:
        echo(
            f"Labelled {labelling['labelled']} tracks with model {labelling['model']}"
            + (
                f" ({labelling['changed_genre']} changed genre)."
                if labelling["changed_genre"]
                else "."
            )
            + (
                f" {labelling['label_failed']} could not be labelled: "
                f"`genrectl jobs show {report['batch_id']}`."
                if labelling["label_failed"]
                else ""
            )
        )
    if report["missing"]:
        echo(f"{len(report['missing'])} tracks are missing from disk (marked missing).")
        if not quiet:
            for path in report["missing"][:20]:
                echo(f"  missing {path}")
