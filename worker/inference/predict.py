"""A model's answer for segments and for tracks: batched, without grad, on any device.

A track's answer is the mean of its segments' (or windows') probabilities: the ensemble over
segments the reference wished it had used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from genrectl.errors import ConfigError
from worker.models.device import to_device
from worker.models.heads import GenreHead


@torch.inference_mode()
def predict_segments(
    model: nn.Module, mel: np.ndarray, *, device: torch.device | str = "cpu", batch_size: int = 64
) -> np.ndarray:
    """Class probabilities of each segment: ``mel`` float16/float32 dB ``[N, n_mels, n_frames]``
    → float32 ``[N, n_classes]`` (softmax), ``batch_size`` segments at a time, without grad."""
    if mel.ndim != 3:
        raise ConfigError(f"mel has shape {mel.shape}; expected [N, n_mels, n_frames]")
    device = torch.device(device)
    to_device(model, device).eval()
    out = []
    for start in range(0, len(mel), batch_size):
        batch = torch.from_numpy(np.asarray(mel[start : start + batch_size], dtype=np.float32))
        batch = batch.unsqueeze(1).to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(batch)
        out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    if not out:
        n_classes = int(getattr(model, "n_classes", 0))
        return np.zeros((0, n_classes), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def track_probabilities(probs: np.ndarray, track_ids: np.ndarray) -> dict[int, np.ndarray]:
    """Mean segment probability per track: ``probs`` ``[N, C]``, ``track_ids`` ``[N]`` →
    ``{track_id: [C]}``, in order of first appearance."""
    if len(probs) != len(track_ids):
        raise ConfigError(f"{len(probs)} probability rows but {len(track_ids)} track ids")
    unique, first, inverse = np.unique(track_ids, return_index=True, return_inverse=True)
    sums = np.zeros((len(unique), probs.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, probs)
    means = (sums / np.bincount(inverse)[:, None]).astype(np.float32)
    return {int(unique[i]): means[i] for i in np.argsort(first)}


@dataclass(frozen=True)
class Rows:
    """One feature set's rows (segments or windows) of some tracks: ``arrays``
    ``{name: [N, ...]}`` and ``owner`` ``[N]``, the track each row belongs to."""

    arrays: dict[str, np.ndarray]
    owner: np.ndarray

    def __post_init__(self) -> None:
        for name, array in self.arrays.items():
            if len(array) != len(self.owner):
                raise ConfigError(f"{name} has {len(array)} rows for {len(self.owner)} owners")

    def __len__(self) -> int:
        return len(self.owner)

    def of(self, tracks: np.ndarray | Sequence[int]) -> Rows:
        """The rows of ``tracks``."""
        mask = np.isin(self.owner, np.asarray(tracks))
        return Rows({k: v[mask] for k, v in self.arrays.items()}, self.owner[mask])

    def means(self, tracks: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Per track of ``tracks`` (in that order), the mean of its rows of each array of
        ``names``: ``{name: float32 [len(tracks), ...]}``; KeyError for a track without rows."""
        position = {int(t): i for i, t in enumerate(tracks.tolist())}
        keep = np.asarray([int(t) in position for t in self.owner.tolist()], dtype=bool)
        index = np.asarray([position[int(t)] for t in self.owner[keep].tolist()], dtype=np.int64)
        counts = np.bincount(index, minlength=len(tracks))
        if (counts == 0).any():
            raise KeyError(f"track {int(tracks[int(np.argmin(counts))])} has no rows")
        out = {}
        for name in names:
            values = np.asarray(self.arrays[name][keep], dtype=np.float64)
            sums = np.zeros((len(tracks), *values.shape[1:]))
            np.add.at(sums, index, values)
            out[name] = (sums / counts.reshape(-1, *[1] * (values.ndim - 1))).astype(np.float32)
        return out

    @staticmethod
    def concatenate(parts: Sequence[Rows]) -> Rows:
        names = parts[0].arrays
        return Rows(
            {k: np.concatenate([p.arrays[k] for p in parts]) for k in names},
            np.concatenate([p.owner for p in parts]),
        )


def head_features(
    head: GenreHead, rows: Sequence[Rows], tracks: np.ndarray
) -> list[dict[str, torch.Tensor]]:
    """Per feature set the head reads, the track means of the arrays it needs."""
    return [
        {k: torch.from_numpy(v) for k, v in part.means(tracks, head.needs(i)).items()}
        for i, part in enumerate(rows)
    ]


def covered(head: GenreHead, rows: Sequence[Rows]) -> np.ndarray:
    """The tracks with rows in every feature set the head reads, sorted."""
    owners = [np.unique(part.owner) for i, part in enumerate(rows) if head.needs(i)]
    tracks = owners[0]
    for more in owners[1:]:
        tracks = np.intersect1d(tracks, more)
    return tracks


@torch.inference_mode()
def score_tracks(
    model: nn.Module, rows: Sequence[Rows], *, device: torch.device | str = "cpu"
) -> dict[int, np.ndarray]:
    """Class probabilities per track, ``{track: float32 [C]}``, from the rows of each of the
    model's feature sets (in its order). A mel classifier scores each segment and averages
    (the ensemble over segments); a GenreHead reads its feature sets' track means."""
    if not isinstance(model, GenreHead):
        probs = predict_segments(model, rows[0].arrays["mel"], device=device)
        return track_probabilities(probs, rows[0].owner)
    tracks = covered(model, rows)
    if not len(tracks):
        return {}
    model.eval()
    probs = torch.softmax(model(head_features(model, rows, tracks)).float(), dim=1).numpy()
    return {int(t): p for t, p in zip(tracks.tolist(), probs, strict=True)}


@torch.inference_mode()
def score_windows(
    model: nn.Module, rows: Sequence[Rows], *, device: torch.device | str = "cpu"
) -> np.ndarray:
    """Class probabilities of each row of the first feature set, for one track: a mel
    classifier's per segment; a GenreHead's with each window of the first set in place of
    its track mean (the other sets' rows still averaged over the track)."""
    if not isinstance(model, GenreHead):
        return predict_segments(model, rows[0].arrays["mel"], device=device)
    track = rows[0].owner[:1]
    features = head_features(model, rows, track)
    first = {k: torch.from_numpy(np.asarray(rows[0].arrays[k], np.float32)) for k in model.needs(0)}
    n = len(rows[0])
    windows = [first] + [{k: v.expand(n, *v.shape[1:]) for k, v in f.items()} for f in features[1:]]
    model.eval()
    return torch.softmax(model(windows).float(), dim=1).numpy()
