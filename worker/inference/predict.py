"""A model's answer for segments and for tracks: batched, without grad, on any device.

A track's answer is the mean of its segments' (or windows') probabilities: the ensemble over
segments the reference wished it had used.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from genrectl.errors import ConfigError
from worker.models.device import to_device


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


@torch.inference_mode()
def predict_rows(
    model: nn.Module,
    arrays: dict[str, np.ndarray],
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> np.ndarray:
    """Class probabilities of each row of a feature set's arrays, whatever the model: a mel
    classifier reads ``arrays["mel"]``, a GenreHead the encoder outputs it needs. Returns
    float32 ``[N, n_classes]`` (softmax)."""
    from worker.models.heads import GenreHead

    if not isinstance(model, GenreHead):
        return predict_segments(model, arrays["mel"], device=device, batch_size=batch_size)
    device = torch.device(device)
    model.to(device).eval()
    n = len(next(iter(arrays.values()))) if arrays else 0
    out = []
    for start in range(0, n, batch_size):
        batch = {
            name: torch.from_numpy(np.asarray(arrays[name][start : start + batch_size])).to(device)
            for name in model.needs
        }
        out.append(torch.softmax(model(batch).float(), dim=1).cpu().numpy())
    if not out:
        return np.zeros((0, model.n_classes), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)
