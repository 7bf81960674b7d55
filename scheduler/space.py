"""How much disk a batch will need, checked before it starts (a statvfs call: cheap).

The estimate is an upper bound of a typical library's: every track is counted with its
feature sets' most rows (20 mel segments, 3 mn04 windows...), each row at its float16 size
times the compression measured on GTZAN, plus one shard's fixed HDF5 overhead per chunk and
feature set. A library of short clips needs less; nothing is refused that the estimate does
not exceed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from genrectl.errors import StorageFullError
from genrectl.faults import free_bytes, human_bytes, mount_point
from genrectl.settings import Settings
from worker.features.mel import FeatureParams
from worker.features.sets import FeatureSet

# Measured: a shard of a handful of encoder rows is 16.5 KB, nearly all of it HDF5 metadata.
SHARD_OVERHEAD_BYTES = 16 * 1024
# Measured on GTZAN mels (shards.py): gzip+shuffle stores float16 dB at 1/1.42 of its size.
MEL_COMPRESSED = 0.71
# Encoder outputs (logits, embeddings) compress little: counted whole.
VECTOR_COMPRESSED = 1.0
# Database rows per track (track, job, one segment row per window, a prediction).
DATABASE_BYTES_PER_TRACK = 4 * 1024
_COLUMN_BYTES = 8 + 4 + 4  # track_id, segment_index, start_s per row


@dataclass(frozen=True)
class SpaceNeeded:
    shards: int  # bytes of shards
    database: int  # bytes the database grows by
    where: Path  # the shard folder's filesystem
    free: int

    def describe(self, n_tracks: int) -> str:
        return (
            f"up to {human_bytes(self.shards)} of shards for {n_tracks} tracks on "
            f"{mount_point(self.where)} ({human_bytes(self.free)} free)"
        )


def rows_per_track(feature_set: FeatureSet, *, max_segments: int) -> int:
    if isinstance(feature_set, FeatureParams):
        return feature_set.window_spec(max_windows=max_segments).max_windows
    return feature_set.window_spec().max_windows


def shard_bytes(
    sets: Sequence[FeatureSet], *, n_tracks: int, chunk_size: int, max_segments: int
) -> int:
    """Upper estimate of the shard bytes of ``n_tracks`` featurized in chunks of
    ``chunk_size`` (one shard per chunk and feature set)."""
    chunks = math.ceil(n_tracks / max(1, chunk_size))
    total = 0
    for feature_set in sets:
        squeeze = MEL_COMPRESSED if isinstance(feature_set, FeatureParams) else VECTOR_COMPRESSED
        values = sum(math.prod(shape) for shape in feature_set.shapes.values())
        row = values * 2 * squeeze + _COLUMN_BYTES
        rows = n_tracks * rows_per_track(feature_set, max_segments=max_segments)
        total += chunks * SHARD_OVERHEAD_BYTES + math.ceil(rows * row)
    return total


def check_space(settings: Settings, sets: Sequence[FeatureSet], n_tracks: int) -> SpaceNeeded:
    """The space a batch of ``n_tracks`` needs; StorageFullError when the shard folder's
    filesystem (or the database's, if another) has less free."""
    shards = shard_bytes(
        sets, n_tracks=n_tracks, chunk_size=settings.chunk_size, max_segments=settings.max_segments
    )
    database = n_tracks * DATABASE_BYTES_PER_TRACK
    where = settings.shard_dir
    needed = SpaceNeeded(shards, database, where, free_bytes(where))
    database_file = _sqlite_file(settings)
    same_disk = database_file is None or mount_point(database_file) == mount_point(where)
    if needed.free < shards + (database if same_disk else 0):
        raise StorageFullError(
            f"not enough space on {mount_point(where)} for this batch: up to "
            f"{human_bytes(shards)} of shards needed for {n_tracks} tracks, "
            f"{human_bytes(needed.free)} free; free space or set GENRECTL_DATA_DIR"
        )
    if database_file is not None and not same_disk and free_bytes(database_file) < database:
        raise StorageFullError(
            f"not enough space on {mount_point(database_file)} for the database: about "
            f"{human_bytes(database)} needed for {n_tracks} tracks, "
            f"{human_bytes(free_bytes(database_file))} free; free space or set GENRECTL_HOME"
        )
    return needed


def _sqlite_file(settings: Settings) -> Path | None:
    url = settings.database_url
    path = url.split("///", 1)[-1] if url.startswith("sqlite") else ""
    return Path(path) if path and path != ":memory:" else None
