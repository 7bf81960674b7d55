"""The training cache: features of dataset files, keyed by content, in HDF5 shards.

A labelled folder is decoded once per feature version: its files' rows (mel segments or
encoder windows, and the augmented copies training asks for: pitch shifted, band-limited,
MP3-coded...) go into shards under ``<data_dir>/training-cache/<feature version>/`` and a
JSON index maps each entry, ``<file sha256>/<pitch steps>/<max rows>[/hop<seconds>]
[/<variant>]``, to its shard and rows (the hop names overlapping training windows). A second
run over the same files decodes nothing. Files that cannot be used are remembered too, with
their reason.

The index is rewritten atomically (temporary file, rename) under an exclusive lock that is
held while missing entries are computed, so two runs at once never decode the same file
twice nor lose each other's entries. A shard whose checksum no longer matches is refused
(``ShardError``), naming the cache folder to delete.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from genrectl.errors import DecodeError, ShardError
from worker.audio.windows import WindowSpec
from worker.features.mel import FeatureParams
from worker.features.sets import FeatureSet
from worker.features.shards import file_sha256, open_shard, write_shard

log = logging.getLogger(__name__)

INDEX_FORMAT = "genrectl-training-cache/1"
INDEX_NAME = "index.json"
HASHES_NAME = "file-hashes.json"
# Tracks featurized per shard: bounds memory, and an interrupted run keeps what it finished.
FLUSH_TRACKS = 32

Progress = Callable[[int, int], None]  # (done, total)


# Overlapping training windows hold more segments per track than the grid: at most this many
# times ``max_segments`` (a 30 s track cut every second gives 25 windows, all kept).
WINDOWS_PER_SEGMENT = 2


@dataclass(frozen=True)
class CacheRequest:
    """Rows of the audio file ``path`` (whose bytes hash to ``sha256``), pitch shifted by
    ``pitch_steps`` semitones (0: as recorded) and degraded as ``variant`` says (see
    ``worker.training.augment``; "" as recorded), on the feature set's grid or, with
    ``hop_seconds``, overlapping windows starting every ``hop_seconds``."""

    sha256: str
    path: Path
    pitch_steps: int = 0
    hop_seconds: float | None = None
    variant: str = ""


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(value, sort_keys=True, separators=(",", ":")))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # stopped half-way (Ctrl-C, a full disk): no leftover


def _read_json(path: Path, default: dict[str, Any]) -> dict[str, Any]:
    if not path.exists():
        return default
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ShardError(path, f"unreadable cache index ({exc}); delete '{path.parent}'") from None
    if not isinstance(value, dict):
        raise ShardError(path, f"not a cache index; delete '{path.parent}'")
    return value


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def hash_files(
    paths: Sequence[Path], *, cache_root: Path
) -> tuple[dict[Path, str], dict[Path, str]]:
    """sha256 of each readable file, and the reason for each unreadable one. Hashes are
    remembered by (path, size, mtime) in ``cache_root``, so an unchanged file is not read
    again."""
    memo_path = cache_root / HASHES_NAME
    hashes: dict[Path, str] = {}
    unreadable: dict[Path, str] = {}
    with _locked(cache_root):
        memo = _read_json(memo_path, {})
        before = dict(memo)
        for path in paths:
            try:
                stat = path.stat()
                stamp = [stat.st_size, stat.st_mtime_ns]
                if memo.get(str(path), [])[:2] != stamp:
                    memo[str(path)] = [*stamp, file_sha256(path)]
            except OSError as exc:
                unreadable[path] = f"cannot read file: {exc.strerror}"
                continue
            hashes[path] = memo[str(path)][2]
        if memo != before:
            _write_json(memo_path, memo)
    return hashes, unreadable


class TrainingCache:
    """Features of files for one feature set (see the module docstring).

    ``max_segments`` caps the reference mel's segments per file (an encoder's cap is one of
    its parameters). ``decoded`` counts the files this object featurized; a run that found
    everything cached leaves it at 0.
    """

    def __init__(
        self, root: Path, *, params: FeatureSet, max_segments: int, min_seconds: float
    ) -> None:
        self.params = params
        self.directory = root / params.version
        spec = self._grid_spec(max_segments)
        self.max_segments = spec.max_windows
        self.min_seconds = min(min_seconds, spec.seconds)
        self.decoded = 0
        self._verified: set[str] = set()  # shards whose checksum this object has checked

    def _grid_spec(self, max_segments: int) -> WindowSpec:
        if isinstance(self.params, FeatureParams):
            return self.params.window_spec(max_windows=max_segments)
        return self.params.window_spec()

    def _overlapping(self, request: CacheRequest) -> bool:
        # A hop of the grid's is the grid: same rows, same entry.
        grid = self._grid_spec(self.max_segments)
        return request.hop_seconds not in (None, grid.hop_seconds or grid.seconds)

    def key(self, request: CacheRequest) -> str:
        key = f"{request.sha256}/{request.pitch_steps:+d}/{self.max_segments}"
        if self._overlapping(request):
            key += f"/hop{request.hop_seconds:g}"
        return f"{key}/{request.variant}" if request.variant else key

    def _spec(self, request: CacheRequest) -> WindowSpec:
        grid = self._grid_spec(self.max_segments)
        if not self._overlapping(request):
            return grid
        return WindowSpec(grid.seconds, grid.max_windows * WINDOWS_PER_SEGMENT, request.hop_seconds)

    def _index(self) -> dict[str, Any]:
        index = _read_json(
            self.directory / INDEX_NAME,
            {"format": INDEX_FORMAT, "shards": {}, "entries": {}, "failed": {}},
        )
        if index.get("format") != INDEX_FORMAT:
            raise ShardError(
                self.directory / INDEX_NAME, f"unknown format; delete '{self.directory}'"
            )
        # A shard deleted by hand: forget its entries so they are computed again.
        gone = {name for name in index["shards"] if not (self.directory / name).is_file()}
        if gone:
            index["shards"] = {k: v for k, v in index["shards"].items() if k not in gone}
            index["entries"] = {k: v for k, v in index["entries"].items() if v["shard"] not in gone}
        return index

    def ensure(
        self, requests: Sequence[CacheRequest], *, progress: Progress | None = None
    ) -> dict[str, str]:
        """Featurize the requests not in the cache yet; return ``{key: reason}`` of those that
        cannot be used (undecodable, silent, too short), cached or new."""
        with _locked(self.directory):
            index = self._index()
            done = set(index["entries"]) | set(index["failed"])
            missing = list({self.key(r): r for r in requests if self.key(r) not in done}.values())
            for start in range(0, len(missing), FLUSH_TRACKS):
                chunk = missing[start : start + FLUSH_TRACKS]
                self._add(index, chunk, start=start, total=len(missing), progress=progress)
        return {
            self.key(r): index["failed"][self.key(r)]
            for r in requests
            if self.key(r) in index["failed"]
        }

    def _featurize(self, request: CacheRequest) -> tuple[dict[str, np.ndarray], list[float]]:
        from worker.audio.decode import load_windows
        from worker.features.compute import compute_features
        from worker.training.augment import degrade
        from worker.training.datasets import pitch_shift_segments

        rate = self.params.sample_rate
        _, (windows,) = load_windows(
            request.path,
            sample_rate=rate,
            specs=[self._spec(request)],
            min_seconds=self.min_seconds,
        )
        audio = windows.audio
        if request.pitch_steps:
            audio = pitch_shift_segments(audio, sr=rate, n_steps=request.pitch_steps)
        if request.variant:
            audio = degrade(audio, sample_rate=rate, variant=request.variant)
        self.decoded += 1
        arrays = compute_features(self.params, replace(windows, audio=audio))
        return arrays, list(windows.starts_s)

    def _add(
        self,
        index: dict[str, Any],
        requests: Sequence[CacheRequest],
        *,
        start: int,
        total: int,
        progress: Progress | None,
    ) -> None:
        """Featurize ``requests`` into one new shard and record them in the index."""
        computed: list[tuple[str, dict[str, np.ndarray], list[float]]] = []
        for position, request in enumerate(requests, start=start):
            if progress is not None:
                progress(position, total)
            try:
                computed.append((self.key(request), *self._featurize(request)))
            except DecodeError as exc:
                log.info("training cache: %s", exc)
                index["failed"][self.key(request)] = exc.reason
        if computed:
            self._store(index, computed)
        _write_json(self.directory / INDEX_NAME, index)
        if progress is not None:
            progress(start + len(requests), total)

    def _store(
        self, index: dict[str, Any], computed: list[tuple[str, dict[str, np.ndarray], list[float]]]
    ) -> None:
        counts = [len(starts) for _, _, starts in computed]
        info = write_shard(
            directory=self.directory,
            arrays={
                name: np.concatenate([arrays[name] for _, arrays, _ in computed])
                for name in self.params.shapes
            },
            track_ids=np.concatenate([np.full(n, i) for i, n in enumerate(counts)]),
            segment_index=np.concatenate([np.arange(n) for n in counts]),
            start_s=np.concatenate([np.asarray(s, np.float32) for _, _, s in computed]),
            params=self.params,
        )
        index["shards"][info.path.name] = info.sha256
        row = 0
        for (key, _, _), n in zip(computed, counts, strict=True):
            index["entries"][key] = {"shard": info.path.name, "start": row, "stop": row + n}
            row += n

    def load(self, requests: Sequence[CacheRequest]) -> list[np.ndarray | None]:
        """The feature set's first array as float16 (dB mel ``[n_segments, n_mels,
        n_frames]`` for the reference mel) per request, None where the file is unusable."""
        primary = next(iter(self.params.shapes))
        return [None if a is None else a[primary] for a in self.load_arrays(requests)]

    def load_arrays(self, requests: Sequence[CacheRequest]) -> list[dict[str, np.ndarray] | None]:
        """``{name: float16 [n_rows, *shape]}`` per request (None where the file is
        unusable). Call ``ensure`` first: a request never featurized raises KeyError."""
        index = self._index()
        out: list[dict[str, np.ndarray] | None] = [None] * len(requests)
        by_shard: dict[str, list[tuple[int, dict[str, int]]]] = {}
        for position, request in enumerate(requests):
            key = self.key(request)
            if key in index["failed"]:
                continue
            entry = index["entries"][key]
            by_shard.setdefault(entry["shard"], []).append((position, entry))
        for name, wanted in by_shard.items():
            path, sha = self.directory / name, index["shards"][name]
            try:
                # Shards never change once written: checking each once per run is enough.
                checked = None if name in self._verified else sha
                reader = open_shard(path, params=self.params, sha256=checked)
                self._verified.add(name)
            except ShardError as exc:
                raise ShardError(path, f"{exc.reason}; delete '{self.directory}'") from None
            with reader:
                for position, entry in wanted:
                    rows = list(range(entry["start"], entry["stop"]))
                    arrays = reader.read_arrays(rows)
                    out[position] = {k: v.astype(np.float16) for k, v in arrays.items()}
        return out
