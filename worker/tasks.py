"""Celery tasks: thin wrappers. Ids in, the plain function called, its summary returned.

Arguments are checked before anything runs: a malformed message is rejected, never executed.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from genrectl.settings import Settings
from scheduler.tasknames import FEATURIZE_CHUNK, INFER_SHARD


def _ids(name: str, value: Any) -> list[int]:
    if not isinstance(value, list) or not all(type(v) is int for v in value):
        raise ValueError(f"{name}={value!r} must be a list of integer ids")
    return value


def _id(name: str, value: Any) -> int:
    if type(value) is not int:
        raise ValueError(f"{name}={value!r} must be an integer id")
    return value


@shared_task(name=FEATURIZE_CHUNK)
def featurize_chunk_task(batch_id: int, track_ids: list[int]) -> dict[str, Any]:
    from worker.featurize import featurize_chunk

    result = featurize_chunk(
        Settings.from_env(), batch_id=_id("batch_id", batch_id), track_ids=_ids("track_ids", track_ids)
    )
    return {"done": result.done, "failed": result.failed, "skipped": result.skipped}


@shared_task(name=INFER_SHARD)
def infer_shard_task(shard_id: int, model_id: int, track_ids: list[int] | None = None) -> int:
    from worker.inference import infer_shard

    return infer_shard(
        Settings.from_env(),
        shard_id=_id("shard_id", shard_id),
        model_id=_id("model_id", model_id),
        track_ids=None if track_ids is None else _ids("track_ids", track_ids),
    )
