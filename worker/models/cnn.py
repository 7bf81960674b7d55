"""Genre classifiers over dB mel spectrograms: the reference's simple CNN and DenseNet-121.

Every model ``build_model`` returns is a :class:`MelClassifier`: it takes a batch of dB mel
spectrograms ``[B, 1, n_mels, n_frames]`` (or ``[B, n_mels, n_frames]``) and returns logits
``[B, n_classes]``. How the mel becomes the backbone's input is decided in one place,
:class:`MelInput`, and its constants live in the state dict so inference reproduces training.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genrectl.errors import ConfigError, ModelError
from genrectl.files import file_sha256
from worker.models.vision import import_torchvision

import_torchvision()  # before torchvision's own modules: see worker.models.vision
import torchvision  # noqa: E402

Arch = Literal["cnn", "gapcnn", "densenet121"]
InputSize = Literal["native", "224"]
ARCHS: tuple[str, ...] = ("cnn", "gapcnn", "densenet121")
INPUT_SIZES: tuple[str, ...] = ("native", "224")

# Until training measures the real statistics: maps the usual [-80, 0] dB range to [-2, 2].
DEFAULT_MEAN_DB = -40.0
DEFAULT_STD_DB = 20.0

# torch.hub names weight files "<name>-<first 8 hex digits of their sha256>.pth"; this is the
# one torchvision publishes for densenet121(weights=DenseNet121_Weights.IMAGENET1K_V1).
DENSENET121_IMAGENET_FILE = "densenet121-a639ec97.pth"
_HUB_FILE_NAME = re.compile(r"^densenet121-([0-9a-f]{8,64})\.pth$")
# The published densenet121 file predates torchvision's module names ("norm.1" for "norm1").
_OLD_DENSE_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


class MelInput(nn.Module):
    """The one place a dB mel spectrogram becomes a network input.

    ``[B, 1, n_mels, n_frames]`` dB → ``(x - mean) / std`` (so values sit near zero with unit
    spread, which is also the range ImageNet-normalised images have) → bilinear resize to
    ``size`` if given (the reference's 224 x 224) → the channel repeated ``channels`` times
    (3 for DenseNet, whose first convolution expects RGB). ``mean`` and ``std`` are buffers:
    they are saved with the weights and set from the training data by ``set_normalisation``.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, *, channels: int, size: tuple[int, int] | None) -> None:
        super().__init__()
        self.channels = channels
        self.size = size
        self.register_buffer("mean", torch.tensor(DEFAULT_MEAN_DB))
        self.register_buffer("std", torch.tensor(DEFAULT_STD_DB))

    def forward(self, mel_db: torch.Tensor) -> torch.Tensor:
        x = mel_db.unsqueeze(1) if mel_db.dim() == 3 else mel_db
        x = (x - self.mean) / self.std
        if self.size is not None:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        if self.channels != 1:
            x = x.expand(-1, self.channels, -1, -1)
        return x


class _ConvBlock(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, *, pool: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(pool),
        )


class _SimpleCNN(nn.Module):
    """The reference's CNN: 2 x [conv 3x3, batch norm, ReLU, max pool], 2 fully connected
    layers with ReLU and dropout 0.2. Input ``[B, 1, H, W]``, output logits ``[B, n_classes]``."""

    def __init__(
        self,
        *,
        n_classes: int,
        in_hw: tuple[int, int],
        channels: tuple[int, int] = (32, 64),
        pool: int = 4,
        hidden: int = 128,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _ConvBlock(1, channels[0], pool=pool), _ConvBlock(channels[0], channels[1], pool=pool)
        )
        h, w = in_hw[0] // pool // pool, in_hw[1] // pool // pool
        if h < 1 or w < 1:
            raise ConfigError(f"input {in_hw[0]}x{in_hw[1]} is too small for the cnn (min 16x16)")
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels[1] * h * w, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _PooledCNN(nn.Module):
    """A small fully convolutional classifier: 4 x [conv 3x3, batch norm, ReLU, max pool 2]
    with ``width``, 2, 4 and 4 x ``width`` channels, then the mean and the maximum of each
    channel over the whole map, dropout and one linear layer.

    Pooling over time and frequency instead of flattening keeps the head at
    ``8 * width * n_classes`` weights (the reference CNN's first dense layer alone has
    ~300k), so on a few hundred segments it learns patterns rather than their positions.
    Input ``[B, 1, H, W]`` with H, W >= 16, output logits ``[B, n_classes]``.
    """

    def __init__(self, *, n_classes: int, in_hw: tuple[int, int], width: int = 32) -> None:
        super().__init__()
        if min(in_hw) < 16:
            raise ConfigError(f"input {in_hw[0]}x{in_hw[1]} is too small for gapcnn (min 16x16)")
        channels = (width, 2 * width, 4 * width, 4 * width)
        self.features = nn.Sequential(
            *(
                _ConvBlock(c_in, c_out, pool=2)
                for c_in, c_out in zip((1, *channels[:-1]), channels, strict=True)
            )
        )
        self.dropout = nn.Dropout(0.3)
        self.classifier = nn.Linear(2 * channels[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.features(x)
        pooled = torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1)
        return self.classifier(self.dropout(pooled))


class MelClassifier(nn.Module):
    """``input`` (mel → image, see :class:`MelInput`) then ``backbone`` (image → logits).

    Input ``[B, 1, n_mels, n_frames]`` dB (a missing channel axis is added), output
    ``[B, n_classes]`` logits. ``arch``, ``input_size`` and the mel shape are kept as
    attributes so a model file can rebuild the same module.
    """

    def __init__(
        self,
        *,
        arch: str,
        input_size: str,
        mel_shape: tuple[int, int],
        n_classes: int,
        mel_input: MelInput,
        backbone: nn.Module,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.input_size = input_size
        self.mel_shape = mel_shape
        self.n_classes = n_classes
        self.input = mel_input
        self.backbone = backbone

    def forward(self, mel_db: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.input(mel_db))


def set_normalisation(model: nn.Module, *, mean: float, std: float) -> None:
    """Set the dB standardisation constants kept in ``model``'s :class:`MelInput`."""
    if not std > 0:
        raise ConfigError(f"normalisation std={std} must be positive")
    mel_input = _mel_input(model)
    mel_input.mean.fill_(float(mean))
    mel_input.std.fill_(float(std))


def get_normalisation(model: nn.Module) -> dict[str, float]:
    """The dB standardisation constants in ``model``: ``{"mean": ..., "std": ...}``."""
    mel_input = _mel_input(model)
    return {"mean": float(mel_input.mean), "std": float(mel_input.std)}


def _mel_input(model: nn.Module) -> MelInput:
    if not isinstance(model, MelClassifier):
        raise ModelError(f"expected a model from build_model, got {type(model).__name__}")
    return model.input


def _read_imagenet_densenet121(path: Path) -> dict[str, torch.Tensor]:
    """Read a local torchvision densenet121 ImageNet state dict; nothing is downloaded.

    A file named as torch.hub names it (``densenet121-a639ec97.pth``) must have a sha256
    starting with the hex digits in its name, the same check torch.hub makes.
    """
    if not path.is_file():
        raise ModelError(f"pretrained weights '{path}' not found; pass a local file")
    named = _HUB_FILE_NAME.match(path.name)
    if named is not None:
        actual = file_sha256(path)
        if not actual.startswith(named.group(1)):
            raise ModelError(
                f"pretrained weights '{path}' have sha256 {actual}, but their name says "
                f"it starts with {named.group(1)}; re-fetch {DENSENET121_IMAGENET_FILE}"
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refusals and corrupt files alike
        raise ModelError(f"cannot read pretrained weights '{path}': {exc}") from exc
    if not isinstance(state, dict):
        raise ModelError(f"pretrained weights '{path}' are not a state dict")
    return {
        (f"{m.group(1)}{m.group(2)}" if (m := _OLD_DENSE_KEY.match(k)) else k): v
        for k, v in state.items()
    }


def _densenet121(*, n_classes: int, pretrained: Path | None) -> nn.Module:
    net = torchvision.models.densenet121(weights=None)
    if pretrained is not None:
        state = _read_imagenet_densenet121(pretrained)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(f"'{pretrained}' is not a densenet121 state dict: {exc}") from exc
    net.classifier = nn.Linear(net.classifier.in_features, n_classes)
    return net


def build_model(
    *,
    arch: str,
    n_classes: int,
    input_size: str = "native",
    pretrained: Path | None = None,
    n_mels: int = 90,
    n_frames: int = 130,
) -> MelClassifier:
    """Build a genre classifier taking dB mel ``[B, 1, n_mels, n_frames]``, giving logits
    ``[B, n_classes]``.

    ``arch`` is ``"cnn"`` (the reference's), ``"gapcnn"`` (a small CNN pooling over the
    whole map, see ``_PooledCNN``) or ``"densenet121"``; ``input_size`` ``"native"`` feeds
    the mel as it is, ``"224"`` resizes it bilinearly to 224 x 224 as the reference did for
    DenseNet.
    ``pretrained`` is a local torchvision densenet121 ImageNet state-dict file (densenet121
    only); its classifier is replaced by a fresh one for ``n_classes``.
    """
    if arch not in ARCHS:
        raise ConfigError(f"arch={arch!r} must be one of {', '.join(ARCHS)}")
    if input_size not in INPUT_SIZES:
        raise ConfigError(f"input_size={input_size!r} must be one of {', '.join(INPUT_SIZES)}")
    if n_classes < 2:
        raise ConfigError(f"n_classes={n_classes} must be at least 2")
    if pretrained is not None and arch != "densenet121":
        raise ConfigError(f"pretrained weights are for densenet121, not arch={arch!r}")
    size = (224, 224) if input_size == "224" else None
    in_hw = size or (n_mels, n_frames)
    backbone: nn.Module
    if arch == "cnn":
        backbone = _SimpleCNN(n_classes=n_classes, in_hw=in_hw)
        mel_input = MelInput(channels=1, size=size)
    elif arch == "gapcnn":
        backbone = _PooledCNN(n_classes=n_classes, in_hw=in_hw)
        mel_input = MelInput(channels=1, size=size)
    else:
        backbone = _densenet121(n_classes=n_classes, pretrained=pretrained)
        mel_input = MelInput(channels=3, size=size)
    return MelClassifier(
        arch=arch,
        input_size=input_size,
        mel_shape=(n_mels, n_frames),
        n_classes=n_classes,
        mel_input=mel_input,
        backbone=backbone,
    )
