"""Degraded copies of training audio: what real libraries hold that GTZAN does not.

Each variant maps float32 mono windows ``[n, samples]`` at ``sample_rate`` Hz to the same
shape, as a library file of that kind would decode:

- ``band16k``: an old 16 kHz rip, nothing above 8 kHz (resampled to 16 kHz and back);
- ``mp3-128k``: a 128 kbps MP3 (coded at 44.1 kHz with LAME through PyAV and decoded back);
- ``gain-20``: a quiet master, 20 dB down;
- ``gain+6``: a loud master, 6 dB up and clipped at full scale.

The encoder's features depend on level and band, so a head trained on these copies answers
the same for a track however it was mastered or coded.
"""

from __future__ import annotations

import functools
import io

import av
import numpy as np
import torch
import torchaudio

from genrectl.errors import ConfigError

VARIANTS: tuple[str, ...] = ("band16k", "mp3-128k", "gain-20", "gain+6")
_MP3_RATE = 44_100


@functools.lru_cache(maxsize=8)
def _resampler(source: int, target: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(orig_freq=source, new_freq=target)


def _resample(audio: np.ndarray, source: int, target: int) -> np.ndarray:
    with torch.inference_mode():
        return _resampler(source, target)(torch.from_numpy(np.ascontiguousarray(audio))).numpy()


def _fit(audio: np.ndarray, samples: int) -> np.ndarray:
    out = np.zeros(samples, np.float32)
    out[: min(samples, len(audio))] = audio[:samples]
    return out


def _mp3_round_trip(window: np.ndarray, *, sample_rate: int, bitrate: int) -> np.ndarray:
    """``window`` coded as MP3 at ``bitrate`` bit/s and decoded back, same length and rate."""
    high = _resample(window, sample_rate, _MP3_RATE)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=_MP3_RATE, layout="mono")
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(
            high[None, :].astype(np.float32), format="flt", layout="mono"
        )
        frame.sample_rate = _MP3_RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, "r") as container:
        decoded = np.concatenate(
            [f.to_ndarray().reshape(-1).astype(np.float32) for f in container.decode(audio=0)]
        )
    return _fit(_resample(decoded, _MP3_RATE, sample_rate), len(window))


def degrade(audio: np.ndarray, *, sample_rate: int, variant: str) -> np.ndarray:
    """``audio`` float32 ``[n, samples]`` at ``sample_rate`` Hz as the ``variant`` would
    decode (see the module docstring). Raises ConfigError for an unknown variant."""
    if variant not in VARIANTS:
        raise ConfigError(f"variant={variant!r} must be one of {', '.join(VARIANTS)}")
    audio = np.asarray(audio, dtype=np.float32)
    if variant == "band16k":
        rows = [
            _fit(_resample(_resample(w, sample_rate, 16_000), 16_000, sample_rate), len(w))
            for w in audio
        ]
        return np.stack(rows)
    if variant == "mp3-128k":
        return np.stack(
            [_mp3_round_trip(w, sample_rate=sample_rate, bitrate=128_000) for w in audio]
        )
    gain = 10 ** ((-20.0 if variant == "gain-20" else 6.0) / 20)
    return np.clip(audio * gain, -1.0, 1.0).astype(np.float32)
