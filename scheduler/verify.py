"""``genrectl verify``: check what the library's files should be, and rebuild what is not.

Checked: every shard against its recorded sha256, feature version and row count; every
registered model file and the shipped encoders' weights against their sha256; shard files
nothing references and temporary files left by a run that died.

Repaired (``--repair``): the tracks whose rows are in a damaged shard are featurized again
from their audio in a batch of kind ``repair`` (only the damaged feature sets; their other
rows are kept), or marked missing when the audio is gone; the promoted model labels them
again; the damaged shard is dropped once nothing references it. The bundled starter model is
copied again from the package; another model file cannot be rebuilt (import or train it
again). Unreferenced shards and dead runs' temporary files are deleted.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.models import (
    Batch,
    BatchStatus,
    Job,
    JobStatus,
    Model,
    Prediction,
    Segment,
    Shard,
    Track,
    TrackStatus,
)
from genrectl.files import file_sha256
from genrectl.settings import Settings

Progress = Callable[[int, int], None]  # (checked, to check)
# A shard file nothing references may be a concurrent run's, written a moment before its
# commit: only older ones are garbage.
ORPHAN_GRACE_S = 15 * 60
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.tmp$")


@dataclass
class Problem:
    """One thing found wrong: ``kind`` shard | model | encoder | orphan | temporary."""

    kind: str
    path: str
    reason: str
    tracks: int = 0  # tracks with rows in it (a shard)
    repair: str = ""  # what --repair does (or did) about it
    fixed: bool = False


@dataclass
class VerifyReport:
    shards: int = 0
    models: int = 0  # registered model files
    encoders: int = 0  # the shipped encoders' weights
    problems: list[Problem] = field(default_factory=list)
    refeaturized: int = 0  # tracks featurized again by --repair
    missing: int = 0  # tracks whose audio is gone, marked missing
    batch_id: int | None = None

    @property
    def unresolved(self) -> list[Problem]:
        return [p for p in self.problems if not p.fixed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "shards_checked": self.shards,
            "models_checked": self.models,
            "encoders_checked": self.encoders,
            "problems": [asdict(p) for p in self.problems],
            "refeaturized": self.refeaturized,
            "missing": self.missing,
            "repair_batch": self.batch_id,
            "ok": not self.unresolved,
        }


def check_shards(session: Session, settings: Settings, progress: Progress) -> list[Problem]:
    """Every shard row's file, checked; each damaged one is marked so (and a sound one that
    was marked damaged, restored from a backup say, is cleared)."""
    from worker.features.shards import check_shard_file

    shards = list(session.scalars(select(Shard).order_by(Shard.id)))
    held = dict(
        session.execute(
            select(Segment.shard_id, func.count(Segment.track_id.distinct())).group_by(
                Segment.shard_id
            )
        ).all()
    )
    problems = []
    for done, shard in enumerate(shards, start=1):
        reason = check_shard_file(
            Path(shard.path),
            sha256=shard.sha256,
            feature_version=shard.feature_version,
            n_segments=shard.n_segments,
        )
        shard.damaged = reason
        if reason is not None:
            problems.append(Problem("shard", shard.path, reason, tracks=held.get(shard.id, 0)))
        progress(done, len(shards))
    return problems


def check_models(session: Session, report: VerifyReport) -> list[Problem]:
    """Registered model files and the shipped encoders' weights against their sha256."""
    from worker.models.encoders import ENCODERS

    models = [(m.path, m.sha256, f"model {m.name}") for m in session.scalars(select(Model))]
    encoders = [(str(e.weights_path), e.sha256, f"encoder {e.name}") for e in ENCODERS.values()]
    report.models, report.encoders = len(models), len(encoders)
    problems = []
    for path, sha256, what in models + encoders:
        reason = _file_problem(Path(path), sha256)
        if reason is not None:
            kind = "encoder" if what.startswith("encoder") else "model"
            problems.append(Problem(kind, path, f"{what}: {reason}"))
    return problems


def _file_problem(path: Path, sha256: str) -> str | None:
    try:
        actual = file_sha256(path)
    except FileNotFoundError:
        return "missing: no such file"
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    if actual != sha256.lower():
        return f"checksum mismatch: recorded {sha256[:12]}, file has {actual[:12]}"
    return None


def check_leftovers(session: Session, settings: Settings) -> list[Problem]:
    """Tracks an interrupted repair left unfinished, shard files nothing references (older
    than ORPHAN_GRACE_S) and temporary files of processes that are gone."""
    known = set(session.scalars(select(Shard.path)))
    problems = []
    left, _sets = unfinished_repairs(session)
    if left:
        problems.append(
            Problem("unfinished", "", "an interrupted `verify --repair` left them", len(left))
        )
    now = time.time()
    for directory in (settings.shard_dir, settings.model_dir):
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            age = now - _mtime(path)
            temporary = _TEMPORARY.match(path.name)
            if temporary and (not _alive(int(temporary.group(1))) or age > ORPHAN_GRACE_S):
                problems.append(Problem("temporary", str(path), "left by a run that stopped"))
            elif (
                directory == settings.shard_dir
                and path.suffix == ".h5"
                and str(path) not in known
                and age > ORPHAN_GRACE_S
            ):
                problems.append(Problem("orphan", str(path), "no track references it"))
    return problems


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(problems: list[Problem]) -> None:
    for problem in problems:
        if problem.kind in ("orphan", "temporary"):
            with contextlib.suppress(FileNotFoundError):
                Path(problem.path).unlink()
            problem.fixed, problem.repair = True, "deleted"


@dataclass
class RepairPlan:
    """What ``--repair`` featurizes again: a committed batch of the affected tracks."""

    batch_id: int | None
    track_ids: list[int]
    missing: int
    damaged_ids: list[int]
    feature_sets: list[dict[str, Any]] = field(default_factory=list)


def plan_repair(session: Session, settings: Settings, *, owner: str | None) -> RepairPlan:
    """Commit a ``repair`` batch for the tracks with rows in a damaged shard.

    Their rows in damaged shards are deleted (their other rows stay), so that featurizing
    computes only those feature sets again; the promoted model's labels of them are deleted,
    to be computed again from the rebuilt rows. A track whose audio is gone is marked missing.
    """
    from db.registry import promoted_model
    from worker.features.sets import model_feature_sets

    damaged = list(session.scalars(select(Shard).where(Shard.damaged.is_not(None))))
    damaged_ids = [s.id for s in damaged]
    left, sets = unfinished_repairs(session)
    if not damaged and not left:
        return RepairPlan(None, [], 0, [])
    affected = list(
        session.scalars(
            select(Track)
            .outerjoin(Segment)
            .where(Segment.shard_id.in_(damaged_ids) | Track.id.in_(left))
            .distinct()
        )
    )
    session.execute(delete(Segment).where(Segment.shard_id.in_(damaged_ids)))
    sets.update(_feature_sets(session, {s.feature_version for s in damaged}))
    model = promoted_model(session)
    redo, missing = [], 0
    for track in affected:
        local = Path(settings.map_path(track.path))
        if not local.is_file():
            track.status, track.error = TrackStatus.MISSING, "file not found at verify --repair"
            missing += 1
            continue
        stat = local.stat()
        track.size, track.mtime_ns = stat.st_size, stat.st_mtime_ns
        redo.append(track.id)
    if model is not None and redo:
        session.execute(
            delete(Prediction).where(Prediction.model_id == model.id, Prediction.track_id.in_(redo))
        )
    if not redo:
        return RepairPlan(None, [], missing, damaged_ids)
    if model is not None:  # the promoted model's other sets the tracks may lack, too
        sets.update({s.version: s.to_dict() for s in model_feature_sets(model.feature_params)})
    described = list(sets.values())
    batch = Batch(kind="repair", roots=[], total=len(redo), feature_sets=described, owner=owner)
    session.add(batch)
    session.flush()
    session.add_all(Job(batch_id=batch.id, kind="featurize", track_id=t) for t in redo)
    return RepairPlan(batch.id, redo, missing, damaged_ids, described)


def unfinished_repairs(session: Session) -> tuple[list[int], dict[str, dict[str, Any]]]:
    """Tracks an interrupted repair left without the rows it was rebuilding (their damaged
    rows were deleted when it started), and those feature sets by version."""
    from worker.features.sets import feature_set_from_dict

    rows = session.execute(
        select(Batch.feature_sets, Job.track_id)
        .join(Job, Job.batch_id == Batch.id)
        .join(Track, Track.id == Job.track_id)
        .where(
            Batch.kind == "repair",
            Batch.status == BatchStatus.INTERRUPTED,
            Job.status == JobStatus.CANCELLED,
            Track.status == TrackStatus.OK,
        )
    ).all()
    held: dict[int, set[str]] = {}
    candidates = [track_id for _, track_id in rows]
    for track_id, version in session.execute(
        select(Segment.track_id, Segment.feature_version)
        .where(Segment.track_id.in_(candidates))
        .distinct()
    ):
        held.setdefault(track_id, set()).add(version)
    tracks: list[int] = []
    sets: dict[str, dict[str, Any]] = {}
    for described, track_id in rows:
        wanted = {feature_set_from_dict(d).version: d for d in described}
        if not set(wanted) <= held.get(track_id, set()) and track_id not in tracks:
            tracks.append(track_id)
            sets.update(wanted)
    return tracks, sets


def _feature_sets(session: Session, versions: set[str]) -> dict[str, dict[str, Any]]:
    """The parameters of each feature version, from the batches that computed it (the
    damaged file's own attributes cannot be trusted)."""
    from worker.features.sets import feature_set_from_dict

    found: dict[str, dict[str, Any]] = {}
    for described in session.scalars(select(Batch.feature_sets).order_by(Batch.id.desc())):
        for item in described or []:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                version = feature_set_from_dict(item).version
                if version in versions:
                    found.setdefault(version, item)
    if not versions <= set(found):
        from worker.features.mel import FeatureParams

        default = FeatureParams()  # batches before feature sets computed the reference mel
        if default.version in versions:
            found.setdefault(default.version, default.to_dict())
    return found


def drop_unreferenced(session: Session, shard_ids: list[int]) -> list[str]:
    """Delete the rows and files of the shards among ``shard_ids`` nothing references."""
    used = set(
        session.scalars(select(Segment.shard_id).where(Segment.shard_id.in_(shard_ids)).distinct())
    )
    dropped = []
    for shard in session.scalars(select(Shard).where(Shard.id.in_(shard_ids))):
        if shard.id not in used:
            with contextlib.suppress(FileNotFoundError):
                Path(shard.path).unlink()
            session.delete(shard)
            dropped.append(shard.path)
    return dropped
