"""EfficientAT ``mn04_as`` (MobileNetV3, width 0.4, AudioSet 527 classes) on torchvision.

Port of the pretrained weights ``mn04_as_mAP_432.pt`` (EfficientAT, Schmid, Koutini & Widmer,
ICASSP 2023; MIT licence, "Copyright (c) 2022 Florian Schmid") onto torchvision's MobileNetV3
with no EfficientAT code.  The module has three parts:

* :class:`MN04FrontEnd` -- waveform (32 kHz mono, float in [-1, 1]) to the normalised log-mel
  spectrogram the network was trained on, ``[batch, 1, 128, frames]`` with 100 frames per second.
* :class:`MN04Net` -- the CNN; ``forward`` returns :class:`MN04Output` (logits, 384-d and 512-d
  embeddings).
* :func:`load_mn04` -- builds both, checks the weight file's sha256, renames the state-dict
  keys and loads them with ``strict=True``.

Nothing is read at import time; every path is an argument. The encoder's outputs per window
are what genrectl stores (``worker.features.encoder``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torchaudio
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from genrectl.errors import ModelError
from worker.models.encoders import MN04 as MN04_SPEC
from worker.models.encoders.weights import read_weights
from worker.models.vision import import_torchvision

import_torchvision()  # before torchvision's own modules: see worker.models.vision
from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf  # noqa: E402

#: Sample rate (Hz) the network expects.
SAMPLE_RATE = MN04_SPEC.sample_rate
#: Number of AudioSet classes.
NUM_CLASSES = MN04_SPEC.output_sizes["logits"]


class MN04FrontEnd(nn.Module):
    """EfficientAT's log-mel front end (inference mode, no augmentation).

    Pipeline: pre-emphasis ``y[t] = x[t+1] - 0.97 x[t]`` (valid convolution, so one sample
    shorter), STFT (``n_fft`` 1024, Hann window of ``win_length`` 800 samples, symmetric by
    default, hop 320, centred with ``n_fft // 2`` reflect padding each side as ``torch.stft``
    does), power spectrum, 128 Kaldi-style triangular mel filters between ``f_min`` and
    ``f_max`` (Hz) from ``torchaudio.compliance.kaldi.get_mel_banks`` padded from 512 to 513
    FFT bins (the Nyquist bin gets weight 0), ``log(x + 1e-5)``, then ``(x + 4.5) / 5``.

    Args (keyword-only):
        sample_rate: input sample rate in Hz (32000 for the shipped weights).
        n_fft: FFT size in samples.
        win_length: analysis window length in samples.
        hop_length: hop in samples (320 at 32 kHz = 10 ms, i.e. 100 frames/s).
        n_mels: number of mel bands.
        f_min: lowest mel edge in Hz.
        f_max: highest mel edge in Hz (EfficientAT's ``fmax=None`` default at 32 kHz resolves
            to 15000 Hz; the weights' provenance note says 0--16 kHz; both are accepted).
        periodic_window: ``False`` = symmetric Hann (EfficientAT), ``True`` = periodic.
        center: centre frames (pad ``n_fft // 2`` each side) as EfficientAT does.
        pad_mode: padding mode of the centred STFT (``torch.stft`` default ``"reflect"``).
        pad_to_513: pad Kaldi's 512-bin filterbank with a zero Nyquist column (EfficientAT).
            When ``False`` the Nyquist bin is dropped from the power spectrum instead (numerically
            identical; kept as a switch for verification).
    """

    window: Tensor
    preemphasis: Tensor
    mel_basis: Tensor

    def __init__(
        self,
        *,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = 1024,
        win_length: int = 800,
        hop_length: int = 320,
        n_mels: int = 128,
        f_min: float = 0.0,
        f_max: float = 16_000.0,
        periodic_window: bool = False,
        center: bool = True,
        pad_mode: str = "reflect",
        pad_to_513: bool = True,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.center = center
        self.pad_mode = pad_mode
        self.pad_to_513 = pad_to_513
        self.register_buffer(
            "window", torch.hann_window(win_length, periodic=periodic_window), persistent=False
        )
        self.register_buffer("preemphasis", torch.tensor([[[-0.97, 1.0]]]), persistent=False)
        mel, _ = torchaudio.compliance.kaldi.get_mel_banks(
            n_mels, n_fft, float(sample_rate), f_min, f_max, 100.0, -500.0, 1.0
        )  # [n_mels, n_fft // 2]
        if pad_to_513:
            mel = nn.functional.pad(mel, (0, 1), mode="constant", value=0.0)
        self.register_buffer("mel_basis", mel.float(), persistent=False)

    def frames_for(self, *, num_samples: int) -> int:
        """Number of output frames for an input of ``num_samples`` samples."""
        n = num_samples - 1  # pre-emphasis is a valid convolution
        if self.center:
            return 1 + n // self.hop_length
        return 1 + (n - self.n_fft) // self.hop_length

    def forward(self, waveform: Tensor) -> Tensor:
        """Waveform ``[batch, samples]`` (or ``[samples]``) at ``sample_rate`` Hz, float in
        [-1, 1] -> normalised log-mel ``[batch, 1, n_mels, frames]`` (float32)."""
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        x = waveform.float()
        # The pre-emphasis filter [-0.97, 1] as a valid convolution, written out: 5x cheaper
        # than conv1d on a 2-tap kernel.
        x = x[:, 1:] + self.preemphasis[0, 0, 0] * x[:, :-1]
        spec = torch.stft(
            x,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=self.center,
            pad_mode=self.pad_mode,
            normalized=False,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # [B, n_fft//2 + 1, frames]
        if not self.pad_to_513:
            power = power[:, :-1, :]
        mel = torch.matmul(self.mel_basis, power)
        mel = (mel + 1e-5).log()
        mel = (mel + 4.5) / 5.0
        return mel.unsqueeze(1)


@dataclass(frozen=True)
class MN04Output:
    """Outputs of :class:`MN04Net` for a batch of ``B`` spectrograms.

    Attributes:
        logits: ``[B, 527]`` AudioSet logits (apply ``sigmoid`` for multi-label probabilities).
        emb384: ``[B, 384]`` global average pool of the last feature map.
        emb512: ``[B, 512]`` first classifier layer + hardswish (before dropout).
    """

    logits: Tensor
    emb384: Tensor
    emb512: Tensor


class MN04Net(MobileNetV3):
    """torchvision MobileNetV3-large, width 0.4, 1 input channel, 527 outputs.

    ``forward`` takes the front end's ``[B, 1, 128, frames]`` (any ``frames`` >= 32) and returns
    an :class:`MN04Output`.
    """

    def __init__(self, *, num_classes: int = NUM_CLASSES, dropout: float = 0.2) -> None:
        settings, last_channel = _mobilenet_v3_conf("mobilenet_v3_large", width_mult=0.4)
        super().__init__(
            settings,
            last_channel,
            num_classes=num_classes,
            dropout=dropout,
            norm_layer=partial(nn.BatchNorm2d, eps=0.001, momentum=0.01),
        )
        # The stem takes one channel (a spectrogram), not RGB; torchvision's is 3x3, stride 2.
        first = self.features[0][0]
        assert isinstance(first, nn.Conv2d)
        self.features[0][0] = nn.Conv2d(
            1, first.out_channels, kernel_size=3, stride=2, padding=1, bias=False
        )

    def forward(self, x: Tensor) -> MN04Output:
        feats = self.features(x)
        emb384 = torch.flatten(self.avgpool(feats), 1)
        emb512 = self.classifier[1](self.classifier[0](emb384))  # Linear + Hardswish
        logits = self.classifier[3](self.classifier[2](emb512))  # Dropout (eval: id) + Linear
        return MN04Output(logits=logits, emb384=emb384, emb512=emb512)


class MN04(nn.Module):
    """Front end + network: 32 kHz waveform ``[B, samples]`` -> :class:`MN04Output`."""

    def __init__(self, *, front_end: MN04FrontEnd, net: MN04Net) -> None:
        super().__init__()
        self.front_end = front_end
        self.net = net

    def forward(self, waveform: Tensor) -> MN04Output:
        """``waveform``: ``[B, samples]`` float at 32 kHz (>= ~0.33 s)."""
        spectrogram = self.front_end(waveform).contiguous(memory_format=torch.channels_last)
        return self.net(spectrogram)


def fuse_for_inference(model: MN04) -> MN04:
    """A copy of the eval-mode ``model`` with every batch norm folded into its conv and
    channels-last weights: what featurizing runs, with the same outputs to float32 rounding.
    ``load_mn04``'s module stays the state dict's faithful port.

    Each of torchvision's conv-norm-activation blocks is a Sequential that starts with a conv
    and its batch norm; they are fused in place (not by tracing with torch.fx, which cost
    0.3 s of every process's start for the same arithmetic)."""
    fused = copy.deepcopy(model).eval()
    for block in fused.net.features.modules():
        if (
            isinstance(block, nn.Sequential)
            and len(block) >= 2
            and isinstance(block[0], nn.Conv2d)
            and isinstance(block[1], nn.BatchNorm2d)
        ):
            block[0] = fuse_conv_bn_eval(block[0], block[1])
            block[1] = nn.Identity()
    return fused.to(memory_format=torch.channels_last)


def remap_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename EfficientAT ``mn04_as`` keys (and reshape SE weights) to torchvision's layout.

    * ``...block.N.conc_se_layers.0.fcK.*`` -> ``...block.N.fcK.*``; the linear ``[out, in]``
      weights become 1x1 conv weights ``[out, in, 1, 1]``.
    * ``classifier.2.*`` -> ``classifier.0.*`` and ``classifier.5.*`` -> ``classifier.3.*``.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        new = key.replace("conc_se_layers.0.", "")
        if new != key and new.endswith(".weight") and value.dim() == 2:
            value = value[:, :, None, None]
        if new.startswith("classifier.2."):
            new = "classifier.0." + new[len("classifier.2.") :]
        elif new.startswith("classifier.5."):
            new = "classifier.3." + new[len("classifier.5.") :]
        out[new] = value
    return out


def load_mn04(*, weights_path: Path, expected_sha256: str = MN04_SPEC.sha256) -> MN04:
    """Build :class:`MN04` and load ``mn04_as_mAP_432.pt`` into it (``strict=True``), on the
    CPU in eval mode.

    The file's sha256 is checked before anything is unpickled, and it is read with
    ``weights_only=True``. Raises ModelError naming the file and the expected sha256 when it
    is missing, altered or does not fit the architecture: never a silent fallback.
    """
    state = read_weights(weights_path, expected_sha256=expected_sha256, what="encoder")
    net = MN04Net()
    try:
        net.load_state_dict(remap_state_dict(state), strict=True)
    except RuntimeError as exc:
        raise ModelError(f"encoder weights '{weights_path}' do not fit mn04: {exc}") from exc
    return MN04(front_end=MN04FrontEnd(), net=net).eval()
