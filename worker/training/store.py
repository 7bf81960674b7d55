"""Where training features come from: the training cache, or the library's own shards.

A ``FeatureStore`` serves one feature set's rows of ``TrainingTrack``s: library tracks as
recorded from the library's shards (nothing decoded), everything else (labelled folders,
pitch-shifted or degraded copies, overlapping windows) from the training cache, featurized
once. A library shard that fails its check is skipped with one warning, and its tracks are
decoded from their audio instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genrectl.errors import REPAIR_HINT, ShardError
from genrectl.settings import Settings
from worker.features.sets import FeatureSet
from worker.features.shards import open_shard
from worker.training.cache import CacheRequest, Progress, TrainingCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingTrack:
    """One track to learn from or test on. ``library_segments``: for library tracks, by
    feature version, (shard path, shard sha256, row) of each segment; empty for files of a
    labelled folder."""

    key: str
    genre: str
    path: Path
    sha256: str
    library_segments: Mapping[str, tuple[tuple[str, str, int], ...]] = field(default_factory=dict)
    source: str = ""  # the data folder's name (results are reported per folder)
    artist: str | None = None  # from the file's tags (library tracks): groups inner folds


# Labelled collections hold excerpts (gtzan-clips: 2-3 s); a library track this short is not
# a song, but a labelled excerpt is still a fair example of its genre.
TRAINING_MIN_SECONDS = 1.0

Wanted = Sequence[tuple["TrainingTrack", int]]  # (track, pitch steps)


class FeatureStore:
    """Features of training tracks for one feature set: from the training cache, or the
    library's own shards for library tracks as recorded."""

    def __init__(
        self,
        settings: Settings,
        params: FeatureSet,
        *,
        progress: Progress | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.params = params
        self.cache = TrainingCache(
            settings.data_dir / "training-cache",
            params=params,
            max_segments=settings.max_segments,
            min_seconds=min(settings.min_track_seconds, TRAINING_MIN_SECONDS),
        )
        self.progress = progress
        self.warn = warn or log.warning
        self.damaged: set[str] = set()  # library shards that failed their check

    def _request(
        self, track: TrainingTrack, steps: int, hop: float | None, variant: str
    ) -> CacheRequest:
        return CacheRequest(
            track.sha256, track.path, pitch_steps=steps, hop_seconds=hop, variant=variant
        )

    def _from_cache(
        self, track: TrainingTrack, steps: int, hop: float | None, variant: str
    ) -> bool:
        # The library's shards hold its tracks as recorded, on the grid; the rest is decoded,
        # and so are tracks whose rows are in a damaged shard.
        segments = track.library_segments.get(self.params.version)
        held = segments is not None and not any(s in self.damaged for s, _, _ in segments)
        return bool(steps or hop is not None or variant or not held)

    def prepare(
        self, wanted: Wanted, *, hop_seconds: float | None = None, variant: str = ""
    ) -> dict[str, str]:
        """Featurize what is missing of ``(track, pitch steps)`` (overlapping windows every
        ``hop_seconds`` if given; degraded as ``variant`` says); ``{track key: reason}`` of
        those that cannot be used."""
        todo = [
            (t.key, self._request(t, s, hop_seconds, variant))
            for t, s in wanted
            if self._from_cache(t, s, hop_seconds, variant)
        ]
        failed = self.cache.ensure([r for _, r in todo], progress=self.progress)
        return {key: failed[k] for key, r in todo if (k := self.cache.key(r)) in failed}

    def arrays(
        self, wanted: Wanted, *, hop_seconds: float | None = None, variant: str = ""
    ) -> list[dict[str, np.ndarray] | None]:
        """``{name: float16 [n, *shape]}`` per ``(track, pitch steps)``, None where unusable.
        Call ``prepare`` first, with the same ``hop_seconds`` and ``variant``."""
        out: list[dict[str, np.ndarray] | None] = [None] * len(wanted)
        cached = [
            i for i, (t, s) in enumerate(wanted) if self._from_cache(t, s, hop_seconds, variant)
        ]
        requests = [self._request(*wanted[i], hop_seconds, variant) for i in cached]
        for i, arrays in zip(cached, self.cache.load_arrays(requests), strict=True):
            out[i] = arrays
        from_cache = set(cached)
        library = [i for i in range(len(wanted)) if i not in from_cache]
        read = self._library_arrays([wanted[i][0] for i in library])
        for i, arrays in zip(library, read, strict=True):
            out[i] = arrays
        return out

    def mel(self, wanted: Wanted, *, hop_seconds: float | None = None) -> list[np.ndarray | None]:
        """float16 dB mel ``[n, n_mels, n_frames]`` per ``(track, pitch steps)`` (the first
        array of other feature sets), None where unusable."""
        primary = next(iter(self.params.shapes))
        found = self.arrays(wanted, hop_seconds=hop_seconds)
        return [None if a is None else a[primary] for a in found]

    def _library_arrays(
        self, tracks: Sequence[TrainingTrack]
    ) -> list[dict[str, np.ndarray] | None]:
        version = self.params.version
        rows_of: dict[tuple[str, str], list[int]] = {}
        for track in tracks:
            for shard, sha, row in track.library_segments[version]:
                rows_of.setdefault((shard, sha), []).append(row)
        read: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        for (shard, sha), rows in rows_of.items():
            unique = sorted(set(rows))
            try:
                with open_shard(Path(shard), params=self.params, sha256=sha) as reader:
                    arrays = reader.read_arrays(unique)
            except ShardError as exc:
                self._skip_damaged(exc)
                continue
            for i, row in enumerate(unique):
                read[(shard, row)] = {k: v[i].astype(np.float16) for k, v in arrays.items()}
        out: list[dict[str, np.ndarray] | None] = [
            {
                name: np.stack([read[(s, r)][name] for s, _, r in t.library_segments[version]])
                for name in self.params.shapes
            }
            if all((s, r) in read for s, _, r in t.library_segments[version])
            else None
            for t in tracks
        ]
        redo = [i for i, arrays in enumerate(out) if arrays is None]
        if redo:  # from their audio instead, through the training cache
            wanted = [(tracks[i], 0) for i in redo]
            self.prepare(wanted)
            for i, found in zip(redo, self.arrays(wanted), strict=True):
                out[i] = found
        return out

    def _skip_damaged(self, exc: ShardError) -> None:
        """One warning per damaged library shard; its tracks are decoded from their audio."""
        from db.engine import session_scope
        from scheduler.shardstate import mark_damaged

        self.damaged.add(str(exc.path))
        self.warn(f"skipped {exc}: its tracks are decoded from their audio; {REPAIR_HINT}")
        with session_scope(self.settings) as session:
            mark_damaged(session, str(exc.path), exc.reason)
