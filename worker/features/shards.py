"""HDF5 feature shards: many tracks' features of one feature set in one file, written
atomically.

Layout (DESIGN.md, "Storage formats"):

- one float16 dataset per array the feature set stores (``FeatureSet.shapes``), one row per
  segment or window, compressed: ``mel`` [n, n_mels, n_frames] dB for the reference mel,
  one segment per chunk; an encoder's ``logits`` [n, 527] and embedding [n, 512], many rows
  per chunk.
- ``track_id`` int64 [n], ``segment_index`` int32 [n], ``start_s`` float32 [n] (seconds).
- attributes ``feature_params`` (JSON of the feature set) and ``feature_version``.

A shard is built in memory, written under a temporary name in its directory, flushed to
disk, read back, then renamed to ``shard-<uuid4 hex>.h5``: a reader never sees half a shard,
and a full disk leaves no partial file. Readers check the sha256 recorded at write time and
the feature version before use.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from genrectl.errors import ShardError
from genrectl.files import file_sha256, write_atomically
from worker.features.sets import FeatureSet

# gzip level 4 with the byte-shuffle filter, measured on GTZAN mels (float16 dB, one
# segment per chunk): 16.5 KB/segment (ratio 1.42) against 18.6 KB for LZF+shuffle and 23.1 KB
# for plain LZF; reads 12k segments/s against LZF's 19k and writes 3.3k/s against 6.4k. Both
# are far beyond featurizing (~50 segments/s per core) and inference, so size wins.
_COMPRESSION: dict[str, Any] = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
_FORMAT = "genrectl-shard/1"
# Rows per chunk of a vector dataset (an encoder's outputs: ~1 KB a row).
_VECTOR_CHUNK_ROWS = 64


@dataclass(frozen=True)
class ShardInfo:
    """A written shard: where it is, its sha256 (hex), its segments and feature version."""

    path: Path
    sha256: str
    n_segments: int
    feature_version: str


def _check_rows(
    arrays: dict[str, np.ndarray], columns: dict[str, np.ndarray], params: FeatureSet
) -> int:
    """The number of rows; ValueError naming the array whose shape is wrong."""
    shapes = params.shapes
    if sorted(arrays) != sorted(shapes):
        raise ValueError(f"arrays {sorted(arrays)} must be exactly {sorted(shapes)}")
    lengths = {len(a) for a in arrays.values()}
    n = lengths.pop() if len(lengths) == 1 else -1
    for name, array in arrays.items():
        if array.ndim != 1 + len(shapes[name]) or array.shape[1:] != shapes[name]:
            dims = ", ".join(str(d) for d in shapes[name])
            raise ValueError(f"{name} shape {array.shape} must be [n, {dims}]")
        if len(array) != n:
            raise ValueError(f"{name} has {len(array)} rows; the arrays disagree on n")
    if n == 0:
        raise ValueError("a shard needs at least one segment; got 0")
    for name, column in columns.items():
        if column.shape != (n,):
            raise ValueError(f"{name} shape {column.shape} must be ({n},), one per segment")
    return n


def _chunks(shape: tuple[int, ...], n: int) -> tuple[int, ...]:
    # A spectrogram is read one segment at a time; vectors are read many rows at once.
    rows = 1 if len(shape) > 1 else min(n, _VECTOR_CHUNK_ROWS)
    return (rows, *shape)


def _build(
    arrays: dict[str, np.ndarray], columns: dict[str, np.ndarray], params: FeatureSet, n: int
) -> bytes:
    """The whole HDF5 file, built in memory: HDF5 never writes to the disk itself, so a full
    or failing disk surfaces as one plain OSError from ``write_atomically`` (not as HDF5's
    flush errors), and nothing is written at all when the space is known to be missing."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        for name, array in arrays.items():
            handle.create_dataset(
                name,
                data=array.astype(np.float16),
                chunks=_chunks(params.shapes[name], n),
                **_COMPRESSION,
            )
        for name, column in columns.items():
            handle.create_dataset(name, data=column)
        handle.attrs["format"] = _FORMAT
        handle.attrs["feature_params"] = json.dumps(params.to_dict(), sort_keys=True)
        handle.attrs["feature_version"] = params.version
    return buffer.getvalue()


def write_shard(
    *,
    directory: Path,
    arrays: dict[str, np.ndarray],
    track_ids: np.ndarray,
    segment_index: np.ndarray,
    start_s: np.ndarray,
    params: FeatureSet,
    hint: str = "GENRECTL_DATA_DIR",
) -> ShardInfo:
    """Write a new shard into ``directory`` (created if needed) and return its ShardInfo.

    arrays: one ``[n, *shape]`` array per name of ``params.shapes`` (stored as float16, so a
    dB mel carries about 0.03 dB of rounding at -80 dB); track_ids, segment_index, start_s:
    [n], one per row. Raises ValueError on n == 0 or mismatched names or shapes, and an
    EnvironmentFault (naming ``hint``, the setting that moves the folder) when the shard
    cannot be written or read back: no space, read-only, an I/O error.
    """
    columns: dict[str, np.ndarray] = {
        "track_id": np.asarray(track_ids, dtype=np.int64),
        "segment_index": np.asarray(segment_index, dtype=np.int32),
        "start_s": np.asarray(start_s, dtype=np.float32),
    }
    n = _check_rows(arrays, columns, params)
    data = _build(arrays, columns, params, n)
    final = directory / f"shard-{uuid.uuid4().hex}.h5"
    sha256 = write_atomically(final, data, what="feature shards", hint=hint)
    return ShardInfo(path=final, sha256=sha256, n_segments=n, feature_version=params.version)


class ShardReader:
    """An open, verified shard. Use ``open_shard``; close it (or use ``with``) when done.

    track_ids int64 [n], segment_index int32 [n] and start_s float32 [n] (seconds) are
    loaded on open; feature rows are read on demand with ``read`` / ``read_arrays``.
    """

    def __init__(self, path: Path, handle: h5py.File, params: FeatureSet) -> None:
        self.path = path
        self._handle = handle
        self._shapes = params.shapes
        self._primary = next(iter(self._shapes))
        for name, shape in self._shapes.items():
            if name not in handle:
                raise ShardError(path, f"no {name!r} dataset")
            if handle[name].shape[1:] != shape:
                raise ShardError(
                    path, f"{name} shape {handle[name].shape} does not match [n, {shape}]"
                )
        self.n_segments = int(handle[self._primary].shape[0])
        self.track_ids = np.asarray(handle["track_id"][:], dtype=np.int64)
        self.segment_index = np.asarray(handle["segment_index"][:], dtype=np.int32)
        self.start_s = np.asarray(handle["start_s"][:], dtype=np.float32)
        for name in self._shapes:
            if handle[name].shape[0] != self.n_segments:
                raise ShardError(path, f"{name} does not have one row per segment")
        for name in ("track_ids", "segment_index", "start_s"):
            if getattr(self, name).shape != (self.n_segments,):
                raise ShardError(path, f"{name} does not have one entry per segment")

    def read(self, rows: Sequence[int] | None = None) -> np.ndarray:
        """The feature set's first array (``mel`` for the reference mel) as float32
        ``[k, *shape]``, in the order of ``rows`` (all rows when None). Rows may repeat;
        raises IndexError when out of range."""
        return self.read_arrays(rows, names=(self._primary,))[self._primary]

    def read_arrays(
        self, rows: Sequence[int] | None = None, *, names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """``{name: float32 [k, *shape]}`` for ``names`` (default: every array), rows as in
        ``read``."""
        wanted = None if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        if (
            wanted is not None
            and wanted.size
            and (wanted.min() < 0 or wanted.max() >= self.n_segments)
        ):
            raise IndexError(f"rows must be in [0, {self.n_segments}); got {rows}")
        try:
            return {name: self._rows(name, wanted) for name in names or self._shapes}
        except OSError as exc:  # h5py's error for unreadable or corrupt chunks
            raise ShardError(self.path, f"unreadable {self._primary} data: {exc}") from None

    def _rows(self, name: str, wanted: np.ndarray | None) -> np.ndarray:
        dataset = self._handle[name]
        if wanted is None:
            return np.asarray(dataset[:], dtype=np.float32)
        out = np.empty((len(wanted), *dataset.shape[1:]), dtype=np.float32)
        if len(dataset.shape) <= 2 and len(wanted):
            # Vectors and scalars: a few chunks hold every row; one read of the span, then pick.
            lo, hi = int(wanted.min()), int(wanted.max()) + 1
            out[:] = np.asarray(dataset[lo:hi], dtype=np.float32)[wanted - lo]
            return out
        for position, row in enumerate(wanted):
            out[position] = dataset[row]  # one chunk per row: one decompression each
        return out

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _stored_version(path: Path, handle: h5py.File) -> str:
    version = handle.attrs.get("feature_version")
    if not isinstance(version, str) or "track_id" not in handle:
        raise ShardError(path, "not a genrectl shard (no track_id data or feature_version)")
    return version


def open_shard(path: Path, *, params: FeatureSet, sha256: str | None) -> ShardReader:
    """Open a shard for reading after checking it.

    Raises ShardError when the file is missing or unreadable, when its sha256 differs from
    ``sha256`` (skipped when None), or when it was made with another feature version.
    """
    if not path.is_file():
        raise ShardError(path, "missing: no such file")
    if sha256 is not None:
        try:
            actual = file_sha256(path)
        except OSError as exc:
            raise ShardError(path, f"unreadable: {exc.strerror}") from None
        if actual != sha256.lower():
            raise ShardError(
                path, f"checksum mismatch: recorded {sha256[:12]}, file has {actual[:12]}"
            )
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ShardError(path, f"unreadable: {' '.join(str(exc).split())[:150]}") from None
    try:
        version = _stored_version(path, handle)
        if version != params.version:
            raise ShardError(
                path,
                f"feature version {version} differs from the requested {params.version}; "
                "featurize the tracks again with these parameters",
            )
        return ShardReader(path, handle, params)
    except (ShardError, OSError, KeyError) as exc:
        handle.close()
        if isinstance(exc, ShardError):
            raise
        raise ShardError(path, f"unreadable: {exc}") from None


def check_shard_file(
    path: Path, *, sha256: str, feature_version: str, n_segments: int
) -> str | None:
    """Why the shard at ``path`` cannot be used as recorded (missing, unreadable, checksum
    or feature version or row count differing), or None when it is sound."""
    if not path.is_file():
        return "missing: no such file"
    try:
        actual = file_sha256(path)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    if actual != sha256.lower():
        return f"checksum mismatch: recorded {sha256[:12]}, file has {actual[:12]}"
    try:
        with h5py.File(path, "r") as handle:
            version = _stored_version(path, handle)
            rows = int(handle["track_id"].shape[0])
    except (OSError, KeyError, ShardError) as exc:
        return f"unreadable: {' '.join(str(exc).split())[:150]}"
    if version != feature_version:
        return f"feature version {version}, recorded {feature_version}"
    if rows != n_segments:
        return f"{rows} rows, recorded {n_segments}"
    return None
