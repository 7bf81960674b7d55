"""The FCN music tagger trained on the Million Song Dataset's Last.fm tags (``msd_fcn``).

From "Evaluation of CNN-based automatic music tagging models" (Won, Ferraro, Bogdanov &
Serra, SMC 2020; MIT licence, "Copyright (c) 2020 Music Technology Group, Universitat Pompeu
Fabra. Code developed by Minz Won."), re-implemented here from the state dict's shapes.

It takes a raw 16 kHz mono waveform of 29.1 s (464,000 samples) and carries its own front
end in the state dict (``spec.*``): torchaudio ``MelSpectrogram`` (n_fft 512, hop 256, 96
mel bands 0-8 kHz, power 2), ``AmplitudeToDB`` and a one-channel batch norm (``spec_bn``);
then 5 x [conv 3x3, batch norm, ReLU, max pool] and a dense layer to the 50 tags of
``msd_50tagList.txt`` (rock, pop, jazz, blues, Hip-Hop, country, metal...). ``forward``
returns the tag logits and the 64-d embedding before the dense layer. Nothing is read at
import time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torchaudio
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from genrectl.errors import ModelError
from worker.models.encoders import MSD_FCN as FCN_SPEC
from worker.models.encoders.weights import read_weights

#: Sample rate (Hz) the network takes.
SAMPLE_RATE = FCN_SPEC.sample_rate
#: Samples of 16 kHz audio the network takes (29.1 s).
WINDOW_SAMPLES = 464_000


@dataclass(frozen=True)
class FCNOutput:
    """``logits`` ``[B, 50]`` (sigmoid: tag probabilities), ``emb64`` ``[B, 64]``."""

    logits: Tensor
    emb64: Tensor


class TaggerFrontEnd(nn.Module):
    """Waveform ``[B, samples]`` at 16 kHz -> batch-normalised dB mel ``[B, 1, 96, frames]``.

    ``frames = 1 + samples // 256``.  The mel filterbank and window are loaded from the state
    dict (keys ``spec.spectrogram.window``, ``spec.mel_scale.fb``, ``spec_bn.*`` of the parent).
    """

    def __init__(
        self,
        *,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = 512,
        f_min: float = 0.0,
        f_max: float = 8_000.0,
        n_mels: int = 96,
    ) -> None:
        super().__init__()
        self.spec = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, f_min=f_min, f_max=f_max, n_mels=n_mels
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB()
        self.spec_bn = nn.BatchNorm2d(1)

    def forward(self, waveform: Tensor) -> Tensor:
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        x = self.to_db(self.spec(waveform.float()))
        return self.spec_bn(x.unsqueeze(1))


class _Conv2dBlock(nn.Module):
    """conv 3x3 (pad 1) -> BN -> ReLU -> max-pool ``pooling``."""

    def __init__(self, *, c_in: int, c_out: int, pooling: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.mp = nn.MaxPool2d(pooling)

    def forward(self, x: Tensor) -> Tensor:
        return self.mp(self.relu(self.bn(self.conv(x))))


class _FusedBlock(nn.Module):
    """A :class:`_Conv2dBlock` for inference: the batch norm folded into the conv, and the
    ReLU after the max-pool (they commute: ReLU is monotonic), where it touches 8-20x fewer
    values. Same outputs to float32 rounding, about half the CPU time with channels-last
    (BENCHMARKS.md, "Speed targets")."""

    def __init__(self, block: _Conv2dBlock) -> None:
        super().__init__()
        self.conv = fuse_conv_bn_eval(block.conv, block.bn)
        self.mp = block.mp

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.mp(self.conv(x)))


class _TiledFusedBlock(_FusedBlock):
    """The first block, run over the time axis in tiles of ``TILE`` frames. With one input
    channel the conv is memory-bound: its 64-channel output for a whole 29 s window is 45 MB
    and the pool reads it back from RAM; a tile's output stays in cache. Same outputs (tiles
    start on the pool's grid and carry the conv's one frame of context); measured 27 → 6 ms
    per window on one core (BENCHMARKS.md, "Speed targets")."""

    TILE = 512

    def __init__(self, block: _Conv2dBlock) -> None:
        super().__init__(block)
        assert self.TILE % self.mp.kernel_size[1] == 0  # type: ignore[index]  # on the grid

    def forward(self, x: Tensor) -> Tensor:
        frames = x.shape[-1]
        padded = nn.functional.pad(x, (1, 1, 1, 1))
        tiles = [
            torch.relu(
                self.mp(
                    nn.functional.conv2d(
                        padded[..., a : a + self.TILE + 2], self.conv.weight, self.conv.bias
                    )
                )
            )
            for a in range(0, frames, self.TILE)
        ]
        return torch.cat(tiles, dim=-1)


class FCN(nn.Module):
    """Fully convolutional tagger (Choi et al.); input 29.1 s at 16 kHz (464,000 samples)."""

    def __init__(self, *, n_class: int = 50, n_mels: int = 96) -> None:
        super().__init__()
        front = TaggerFrontEnd(n_mels=n_mels)
        self.spec, self.to_db, self.spec_bn = front.spec, front.to_db, front.spec_bn
        self.layer1 = _Conv2dBlock(c_in=1, c_out=64, pooling=(2, 4))
        self.layer2 = _Conv2dBlock(c_in=64, c_out=128, pooling=(2, 4))
        self.layer3 = _Conv2dBlock(c_in=128, c_out=128, pooling=(2, 4))
        self.layer4 = _Conv2dBlock(c_in=128, c_out=128, pooling=(3, 5))
        self.layer5 = _Conv2dBlock(c_in=128, c_out=64, pooling=(4, 4))
        self.dropout = nn.Dropout(0.5)
        self.dense = nn.Linear(64, n_class)

    def forward(self, waveform: Tensor) -> FCNOutput:
        """``waveform``: ``[B, 464000]`` at 16 kHz (shorter inputs fail the pooling)."""
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        x = self.spec_bn(self.to_db(self.spec(waveform.float())).unsqueeze(1))
        x = x.contiguous(memory_format=torch.channels_last)
        x = self.layer5(self.layer4(self.layer3(self.layer2(self.layer1(x)))))
        emb = x.flatten(1)
        if emb.shape[1] != self.dense.in_features:
            raise ValueError(
                f"FCN needs 464,000-sample inputs; got {waveform.shape[-1]} (map {tuple(x.shape)})"
            )
        return FCNOutput(logits=self.dense(self.dropout(emb)), emb64=emb)


def fuse_for_inference(model: FCN) -> FCN:
    """A copy of the eval-mode ``model`` with each block fused (:class:`_FusedBlock`) and
    channels-last weights: what featurizing runs. ``load_fcn``'s module stays the
    state dict's faithful port."""
    fused = copy.deepcopy(model).eval()
    for name in ("layer1", "layer2", "layer3", "layer4", "layer5"):
        block = getattr(fused, name)
        assert isinstance(block, _Conv2dBlock)
        setattr(fused, name, (_TiledFusedBlock if name == "layer1" else _FusedBlock)(block))
    return fused.to(memory_format=torch.channels_last)


def flush_subnormal_(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Zero every subnormal float in ``state_dict`` in place; returns it."""
    for value in state_dict.values():
        if value.is_floating_point():
            tiny = torch.finfo(value.dtype).tiny
            value[(value != 0) & (value.abs() < tiny)] = 0.0
    return state_dict


def load_fcn(*, weights_path: Path, expected_sha256: str = FCN_SPEC.sha256) -> FCN:
    """Build :class:`FCN` and load ``msd_fcn.pth`` into it (``strict=True``), on the CPU in
    eval mode, after checking the file's sha256; read with ``weights_only=True``.

    The file holds about 1e5 subnormal floats (decayed dead filters) which make x86 CPUs
    run it tens of times slower; they are set to 0 (outputs change by far less than float32
    resolution). Raises ModelError naming the file and the expected sha256 when it is
    missing, altered or does not fit.
    """
    state = read_weights(weights_path, expected_sha256=expected_sha256, what="tagger")
    model = FCN()
    try:
        model.load_state_dict(flush_subnormal_(state), strict=True)
    except RuntimeError as exc:
        raise ModelError(f"tagger weights '{weights_path}' do not fit fcn: {exc}") from exc
    return model.eval()
