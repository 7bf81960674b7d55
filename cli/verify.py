"""``genrectl verify [--repair]``: the library's files against what the database recorded."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from sqlalchemy import func, select

from cli.app import EXIT_DAMAGED, Context, emit_json, json_option, pass_context
from db.engine import session_scope
from db.models import Shard
from genrectl.settings import Settings
from scheduler.verify import Problem, VerifyReport

CANNOT_REBUILD = {
    "model": "cannot be rebuilt: import it again (`genrectl models import FILE`), train it "
    "again, or promote another (`genrectl models promote NAME`)",
    "encoder": "cannot be rebuilt here: restore genrectl/models/pretrained/ from the genrectl "
    "repository (or reinstall genrectl)",
}


@click.command()
@click.option(
    "--repair",
    is_flag=True,
    help="Featurize the tracks of damaged shards again from their audio (or mark them "
    "missing), label them again, drop the damaged shards; restore the starter model; delete "
    "unreferenced shards and temporary files left by runs that died.",
)
@json_option
@pass_context
def verify(obj: Context, repair: bool, as_json: bool) -> None:
    """Check every shard against its recorded sha256, feature version and row count, and
    every model file (and the shipped encoders' weights) against its sha256. Exits 6 when
    something is damaged (after --repair: when something could not be repaired).

    \b
    Examples:
      genrectl verify
      genrectl verify --repair
      genrectl verify --json | jq '.problems[] | .path'
    """
    from cli.render import count_progress
    from scheduler.verify import check_leftovers, check_models, check_shards

    settings = obj.ready_settings()
    report = VerifyReport()
    quiet = obj.quiet or as_json
    with session_scope(settings) as session:
        report.shards = session.scalar(select(func.count()).select_from(Shard)) or 0
    with (
        count_progress("Checking shards", report.shards, quiet=quiet) as bar,
        session_scope(settings) as session,
    ):
        report.problems += check_shards(session, settings, bar)
        report.problems += check_models(session, report) + check_leftovers(session, settings)
    if repair:
        _repair(obj, settings, report, quiet=quiet, as_json=as_json)
    if as_json:
        emit_json(report.as_dict())
    else:
        _print(report, repaired=repair)
    if report.unresolved:
        sys.exit(EXIT_DAMAGED)


def _repair(
    obj: Context, settings: Settings, report: VerifyReport, *, quiet: bool, as_json: bool
) -> None:
    from scheduler.verify import remove_leftovers

    remove_leftovers(report.problems)
    for problem in report.problems:
        if problem.kind in ("model", "encoder"):
            _restore_model(settings, problem)
    if any(p.kind in ("shard", "unfinished") for p in report.problems):
        _rebuild_shards(settings, report, quiet=quiet, as_json=as_json)


def _restore_model(settings: Settings, problem: Problem) -> None:
    """The bundled starter is copied again from the package; other files cannot be rebuilt."""
    from db.registry import STARTER_DIR, starter_metadata
    from genrectl.files import file_sha256, write_atomically

    meta = starter_metadata()
    source = STARTER_DIR / "starter.pt"
    is_starter = (
        problem.kind == "model"
        and meta is not None
        and Path(problem.path).name == f"{meta['name']}.pt"
        and file_sha256(source) == meta["sha256"]
    )
    if not is_starter:
        problem.repair = CANNOT_REBUILD[problem.kind]
        return
    write_atomically(
        Path(problem.path), source.read_bytes(), what="model files", hint="GENRECTL_DATA_DIR"
    )
    problem.fixed, problem.repair = True, "copied again from the genrectl package"


def _rebuild_shards(
    settings: Settings, report: VerifyReport, *, quiet: bool, as_json: bool
) -> None:
    """Featurize the damaged shards' tracks again in a repair batch, label them, and drop the
    shards nothing references any more."""
    from cli.batchrun import BatchRun
    from scheduler.batches import IngestPlan, chunked
    from scheduler.liveness import hold_run_lock
    from scheduler.verify import drop_unreferenced, plan_repair
    from worker.features.sets import feature_set_from_dict

    lock = hold_run_lock(settings) if settings.embedded else None
    try:
        with session_scope(settings) as session:
            plan = plan_repair(session, settings, owner=lock.owner if lock else None)
        sets = [feature_set_from_dict(d) for d in plan.feature_sets]
        report.batch_id, report.missing = plan.batch_id, plan.missing
        if plan.batch_id is not None:
            ingest_plan = IngestPlan(batch_id=plan.batch_id, track_ids=plan.track_ids)
            run = BatchRun(
                settings, ingest_plan, "genrectl verify --repair", quiet=quiet, as_json=as_json
            )
            with run.stops():
                run.featurize_and_label(list(chunked(plan.track_ids, settings.chunk_size)), sets)
            report.refeaturized = len(plan.track_ids)
        with session_scope(settings) as session:
            dropped = set(drop_unreferenced(session, plan.damaged_ids))
    finally:
        if lock is not None:
            lock.release()
    for problem in report.problems:
        if problem.kind == "shard" and problem.path in dropped:
            problem.fixed = True
            problem.repair = f"{problem.tracks} tracks featurized again or marked missing; dropped"
        elif problem.kind == "unfinished":
            problem.fixed, problem.repair = True, "featurized again"


def _print(report: VerifyReport, *, repaired: bool) -> None:
    echo = click.echo
    echo(
        f"Checked {report.shards} shards, {report.models} model files and the "
        f"{report.encoders} shipped encoders' weights."
    )
    for problem in report.problems:
        what = f"{problem.kind} {problem.path or 'tracks'}: {problem.reason}"
        if problem.tracks:
            what += f" ({problem.tracks} tracks)"
        if problem.repair:
            what += f" -> {problem.repair}"
        echo(f"  {'repaired' if problem.fixed else 'damaged '} {what}")
    if repaired and report.batch_id is not None:
        echo(
            f"Featurized {report.refeaturized} tracks again (batch #{report.batch_id}); "
            f"{report.missing} tracks whose audio is gone were marked missing."
        )
    if not report.problems:
        echo("Everything matches its recorded checksum.")
    elif report.unresolved and not repaired:
        echo("Run `genrectl verify --repair` to rebuild what can be rebuilt.")
