"""SpecAugment masking of training batches: an option of ``TrainConfig`` (``spec_augment``)."""

from __future__ import annotations

import torch


def _band_mask(n: int, batch: int, max_width: int) -> torch.Tensor:
    """[batch, n] bool: one random run of 0..max_width positions per row."""
    width = torch.randint(0, max_width + 1, (batch, 1))
    start = (torch.rand(batch, 1) * (n - width + 1)).long()
    position = torch.arange(n)[None, :]
    return (position >= start) & (position < start + width)


def spec_augment(
    mel: torch.Tensor, *, masks: int = 2, max_bands: int = 12, max_frames: int = 20
) -> torch.Tensor:
    """SpecAugment's frequency and time masking (Park et al. 2019) for a batch of dB mel
    ``[B, 1, n_mels, n_frames]``: ``masks`` runs of up to ``max_bands`` mel bands and as many
    of up to ``max_frames`` frames per segment are set to that segment's mean. Uses torch's
    global generator, which ``fit`` seeds per epoch, so a resumed run masks identically."""
    out = mel.clone()
    b, n_mels, n_frames = out.shape[0], out.shape[-2], out.shape[-1]
    fill = out.mean(dim=(-2, -1), keepdim=True).expand_as(out)
    for _ in range(masks):
        bands = _band_mask(n_mels, b, max_bands).view(b, 1, n_mels, 1).to(out.device)
        frames = _band_mask(n_frames, b, max_frames).view(b, 1, 1, n_frames).to(out.device)
        out = torch.where(bands.expand_as(out) | frames.expand_as(out), fill, out)
    return out
