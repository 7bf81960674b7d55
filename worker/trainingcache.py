"""The training cache: mel segments of dataset files, keyed by content, in HDF5 shards.

A labelled folder is decoded once per feature version: its files' segments (and the pitch
shifted copies that augmentation asks for) go into shards under
``<data_dir>/training-cache/<feature version>/`` and a JSON index maps each entry,
``<file sha256>/<pitch steps>/<max segments>[/hop<seconds>]``, to its shard and rows (the
hop names overlapping training windows). A second run over the same files decodes nothing.
Files that cannot be used are remembered too, with their reason.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrectl.errors import DecodeError, ShardError
from worker.features import FeatureParams, mel_db
from worker.shards import file_sha256, open_shard, write_shard

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
    """Segments of the audio file ``path`` (whose bytes hash to ``sha256``), pitch shifted by
    ``pitch_steps`` semitones (0: as recorded), on the 6 s grid or, with ``hop_seconds``,
    overlapping windows starting every ``hop_seconds``."""

    sha256: str
    path: Path
    pitch_steps: int = 0
    hop_seconds: float | None = None


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, sort_keys=True, separators=(",", ":")))
    tmp.replace(path)


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
    """Mel segments of files for one set of feature parameters (see the module docstring).

    ``decoded`` counts the files this object featurized; a run that found everything cached
    leaves it at 0.
    """

    def __init__(
        self, root: Path, *, params: FeatureParams, max_segments: int, min_seconds: float
    ) -> None:
        self.params = params
        self.directory = root / params.version
        self.max_segments = max_segments
        self.min_seconds = min(min_seconds, params.segment_seconds)
        self.decoded = 0
        self._verified: set[str] = set()  # shards whose checksum this object has checked

    def _overlapping(self, request: CacheRequest) -> bool:
        # A hop of one segment is the grid: same segments, same entry.
        return request.hop_seconds not in (None, self.params.segment_seconds)

    def key(self, request: CacheRequest) -> str:
        grid = f"{request.sha256}/{request.pitch_steps:+d}/{self.max_segments}"
        return f"{grid}/hop{request.hop_seconds:g}" if self._overlapping(request) else grid

    def _max_segments(self, request: CacheRequest) -> int:
        return self.max_segments * (WINDOWS_PER_SEGMENT if self._overlapping(request) else 1)

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

    def _featurize(self, request: CacheRequest) -> tuple[np.ndarray, list[float]]:
        from worker.audio import load_segments
        from worker.datasets import pitch_shift_segments

        decoded = load_segments(
            request.path,
            params=self.params,
            max_segments=self._max_segments(request),
            min_seconds=self.min_seconds,
            hop_seconds=request.hop_seconds,
        )
        audio = decoded.audio
        if request.pitch_steps:
            sr = self.params.sample_rate
            audio = pitch_shift_segments(audio, sr=sr, n_steps=request.pitch_steps)
        self.decoded += 1
        return mel_db(segments=audio, params=self.params), list(decoded.starts_s)

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
        computed: list[tuple[str, np.ndarray, list[float]]] = []
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
        self, index: dict[str, Any], computed: list[tuple[str, np.ndarray, list[float]]]
    ) -> None:
        mels = [mel for _, mel, _ in computed]
        info = write_shard(
            directory=self.directory,
            mel=np.concatenate(mels),
            track_ids=np.concatenate([np.full(len(m), i) for i, m in enumerate(mels)]),
            segment_index=np.concatenate([np.arange(len(m)) for m in mels]),
            start_s=np.concatenate([np.asarray(s, np.float32) for _, _, s in computed]),
            params=self.params,
        )
        index["shards"][info.path.name] = info.sha256
        row = 0
        for key, mel, _ in computed:
            index["entries"][key] = {"shard": info.path.name, "start": row, "stop": row + len(mel)}
            row += len(mel)

    def load(self, requests: Sequence[CacheRequest]) -> list[np.ndarray | None]:
        """float16 dB mel ``[n_segments, n_mels, n_frames]`` per request (None where the file
        is unusable). Call ``ensure`` first: a request never featurized raises KeyError."""
        index = self._index()
        out: list[np.ndarray | None] = [None] * len(requests)
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
                    out[position] = reader.read(rows).astype(np.float16)
        return out
