"""Celery tasks: thin wrappers. Ids in, the plain function called, its summary returned."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from genrectl.settings import Settings
from scheduler.tasknames import FEATURIZE_CHUNK
from worker.featurize import featurize_chunk


@shared_task(name=FEATURIZE_CHUNK)
def featurize_chunk_task(batch_id: int, track_ids: list[int]) -> dict[str, Any]:
    if not isinstance(batch_id, int) or not all(isinstance(t, int) for t in track_ids):
        raise ValueError(f"malformed featurize arguments: {batch_id!r}, {track_ids!r}")
    result = featurize_chunk(Settings.from_env(), batch_id=batch_id, track_ids=track_ids)
    return {"done": result.done, "failed": result.failed, "skipped": result.skipped}
