"""Feature parameters and the log-mel spectrogram of the reference method.

The reference computes ``librosa.power_to_db(librosa.feature.melspectrogram(...), ref=np.max)``
with n_fft 2048, window 2048, hop 1024 and 90 mel bands on 6 s segments at 22050 Hz. We compute
the same thing with torchaudio (much faster, batched) and prove the match in
``tests/worker/test_features.py``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from worker.audio.windows import WindowSpec

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads FeatureParams cheaply
    import torch
    import torchaudio

# Bump when the code computing features changes in a way the parameters do not capture: it is
# part of ``FeatureParams.version``, so old shards are refused instead of silently mixed in.
# 2: the decode resamples with soxr "HQ" (was torchaudio's Hann sinc).
FEATURE_CODE_VERSION = 2

# librosa.power_to_db's default floor on power, so silence is finite.
_AMIN = 1e-10
# Segments per torch call: bounds the STFT's temporaries (a few MB per segment); larger
# batches measured no faster on CPU.
_BATCH = 8

_INT_FIELDS = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels")
_FLOAT_FIELDS = ("segment_seconds", "top_db")


@dataclass(frozen=True)
class FeatureParams:
    """How audio becomes a mel spectrogram. Defaults are the reference method's.

    sample_rate: Hz the audio is resampled to. n_fft, win_length, hop_length: samples.
    n_mels: mel bands. segment_seconds: length of one segment (one model sample).
    top_db: dynamic range kept below each segment's peak, in dB.
    Raises ValueError naming the bad value when a field is out of range.
    """

    kind: ClassVar[str] = "mel"

    sample_rate: int = 22050
    n_fft: int = 2048
    win_length: int = 2048
    hop_length: int = 1024
    n_mels: int = 90
    segment_seconds: float = 6.0
    top_db: float = 80.0

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive number")
            # 6 and 6.0 must hash to the same version.
            object.__setattr__(self, name, float(value))
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length={self.win_length} must not exceed n_fft={self.n_fft}")
        if self.segment_samples < 1:
            raise ValueError(f"segment_seconds={self.segment_seconds} is shorter than one sample")

    @property
    def segment_samples(self) -> int:
        """Samples in one segment at ``sample_rate`` (132300 for the defaults)."""
        return round(self.segment_seconds * self.sample_rate)

    @property
    def n_frames(self) -> int:
        """STFT frames per segment with centred framing (130 for the defaults)."""
        return 1 + self.segment_samples // self.hop_length

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The arrays stored per segment and their shapes: ``{"mel": (n_mels, n_frames)}``."""
        return {"mel": (self.n_mels, self.n_frames)}

    def window_spec(self, *, max_windows: int, hop_seconds: float | None = None) -> WindowSpec:
        """The segments of a track these features are computed on (the 6 s grid by default;
        how many is a setting, GENRECTL_MAX_SEGMENTS, not a parameter)."""
        return WindowSpec(self.segment_seconds, max_windows, hop_seconds)

    @property
    def version(self) -> str:
        """12 hex characters identifying these parameters and the feature code version."""
        canonical = json.dumps(
            {**self.to_dict(), "code_version": FEATURE_CODE_VERSION},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict; ``from_dict`` reverses it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureParams:
        """Build from a dict such as a shard's stored parameters.

        Missing fields take their defaults; unknown fields and bad values raise ValueError.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown feature parameter {unknown[0]!r}; known: {sorted(known)}")
        return cls(**dict(data))


@functools.lru_cache(maxsize=8)
def _mel_transform(params: FeatureParams) -> torchaudio.transforms.MelSpectrogram:
    import torch
    import torchaudio

    # Every argument spelled out to match librosa.feature.melspectrogram's defaults (librosa
    # >= 0.10): periodic Hann window, centred frames padded with zeros, Slaney mel scale and
    # area normalisation, f_max = Nyquist.
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=params.sample_rate,
        n_fft=params.n_fft,
        win_length=params.win_length,
        hop_length=params.hop_length,
        f_min=0.0,
        f_max=None,
        n_mels=params.n_mels,
        window_fn=torch.hann_window,
        power=2.0,
        normalized=False,
        center=True,
        pad_mode="constant",
        norm="slaney",
        mel_scale="slaney",
    )


def _power_to_db(power: torch.Tensor, *, top_db: float) -> torch.Tensor:
    """``librosa.power_to_db(S, ref=np.max, amin=1e-10, top_db=top_db)`` per segment.

    power: [n, n_mels, n_frames]. The reference level is each segment's own maximum, so the
    peak is 0 dB and the floor is -top_db; an all-zero segment gives all zeros.
    """
    import torch

    db = 10.0 * torch.log10(torch.clamp(power, min=_AMIN))
    db = db - db.amax(dim=(1, 2), keepdim=True)
    return torch.clamp(db, min=-top_db)


def mel_db(*, segments: np.ndarray, params: FeatureParams) -> np.ndarray:
    """Log-mel spectrogram of each segment, in dB relative to that segment's peak.

    segments: float32 [n, params.segment_samples], mono at params.sample_rate, full scale 1.0.
    Returns float32 [n, params.n_mels, params.n_frames], values in [-params.top_db, 0].
    Runs on CPU without autograd. Raises ValueError on a wrong shape or non-finite samples.
    """
    if segments.ndim != 2 or segments.shape[1] != params.segment_samples:
        raise ValueError(
            f"segments shape {segments.shape} must be [n, {params.segment_samples}] "
            f"({params.segment_seconds} s at {params.sample_rate} Hz)"
        )
    if not np.isfinite(segments).all():
        raise ValueError("segments contain NaN or infinite samples")
    import torch

    out = np.empty((len(segments), params.n_mels, params.n_frames), dtype=np.float32)
    transform = _mel_transform(params)
    with torch.inference_mode():
        for lo in range(0, len(segments), _BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(segments[lo : lo + _BATCH], np.float32))
            out[lo : lo + _BATCH] = _power_to_db(transform(batch), top_db=params.top_db).numpy()
    return out
