"""Encoder features: a pretrained encoder's outputs for each window of a track.

The encoder runs at featurize time and its outputs are what a shard stores: a few KB per
window (the class logits and an embedding) instead of the ~250 KB of its input spectrogram,
so inference and training a head read small vectors and never run the encoder again
(README: "Models and accuracy" has the measurements behind this choice).

Audio reaches the encoder through the same 22050 Hz mono decode as the reference mel, then
is resampled to the encoder's rate: every track, whatever its source rate, then holds the
same band (up to 11 kHz) as GTZAN, the data the heads are trained on. Before the encoder
the windows of a track are peak-normalised (a quiet master and a loud one give the same
features: the encoders' log spectrograms have a floor that swallows quiet passages), and
each window's level before that is kept as ``rms_db`` for "is it silence?".

Two encoders are shipped (``worker.models.encoders``): mn04, AudioSet's 527 classes on 10 s
windows, and msd_fcn, the Million Song Dataset's 50 Last.fm tags on one 29 s window.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np

from worker.audio.windows import WindowSpec
from worker.models.encoders import encoder_spec

# Bump when the code computing encoder features changes in a way the parameters miss (not for
# changes within float32 rounding, such as the fused inference modules: shards hold float16).
# 2: decoding and both resamplings by soxr "HQ" (were torchaudio's sinc, Hann then Kaiser).
ENCODER_CODE_VERSION = 2


@dataclass(frozen=True)
class EncoderParams:
    """How a track becomes encoder outputs, one row per window.

    encoder: the shipped encoder's name (``worker.models.encoders``); weights_sha256: the
    weights it must run with ("" means the shipped file's). sample_rate: Hz the audio is
    decoded to before the encoder's own resampling. window_seconds, hop_seconds,
    max_windows: the windows of a track (see ``plan_segments``): ``window_seconds`` long
    every ``hop_seconds``, at most ``max_windows`` evenly spaced over a long track (which
    bounds its cost); a track shorter than a window fills it with itself repeated
    (``fill``: measured better than zeros, which the encoder reads as silence). peak_dbfs:
    the windows' common peak level the encoder hears (None: as recorded). outputs: the
    encoder outputs stored per window, beside ``rms_db``. precision: "float32", or "int8"
    for msd_fcn's convolutions (``worker.models.encoders.int8``). Raises ValueError naming
    a bad value.
    """

    kind: ClassVar[str] = "encoder"

    encoder: str = "mn04"
    weights_sha256: str = ""
    sample_rate: int = 22050
    window_seconds: float = 10.0
    hop_seconds: float = 10.0
    max_windows: int = 3
    fill: str = "repeat"
    peak_dbfs: float | None = -0.1
    outputs: tuple[str, ...] = ("logits", "emb512")
    precision: str = "float32"

    def __post_init__(self) -> None:
        spec = encoder_spec(self.encoder)
        if self.precision not in PRECISIONS.get(self.encoder, ("float32",)):
            allowed = list(PRECISIONS.get(self.encoder, ("float32",)))
            raise ValueError(f"precision={self.precision!r} must be one of {allowed}")
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "weights_sha256", self.weights_sha256 or spec.sha256)
        unknown = sorted(set(self.outputs) - set(spec.output_sizes))
        if unknown or not self.outputs:
            raise ValueError(
                f"outputs={list(self.outputs)!r} must name some of {list(spec.output_sizes)}"
            )
        for name in ("window_seconds", "hop_seconds"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive number of seconds")
            object.__setattr__(self, name, float(value))
        if self.hop_seconds > self.window_seconds:
            raise ValueError(
                f"hop_seconds={self.hop_seconds} must not exceed window_seconds="
                f"{self.window_seconds}"
            )
        for name in ("sample_rate", "max_windows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        peak = self.peak_dbfs
        if peak is not None and not (isinstance(peak, int | float) and -60 <= peak <= 0):
            raise ValueError(f"peak_dbfs={peak!r} must be None or in [-60, 0] dBFS")

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The arrays stored per window and their shapes, e.g. ``{"logits": (527,)}``."""
        sizes = encoder_spec(self.encoder).output_sizes
        return {**{name: (sizes[name],) for name in self.outputs}, LEVEL: ()}

    def window_spec(self, *, max_windows: int | None = None) -> WindowSpec:
        """The windows of a track the encoder runs on (``max_windows`` overrides the cap)."""
        cap = max_windows or self.max_windows
        return WindowSpec(self.window_seconds, cap, self.hop_seconds, fill=self.fill)

    @property
    def version(self) -> str:
        """12 hex characters identifying these parameters and the encoder code version."""
        canonical = json.dumps(
            {**self.to_dict(), "code_version": ENCODER_CODE_VERSION},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``kind``; ``feature_set_from_dict`` reverses it. The precision
        is left out when float32, so parameters from before it existed keep their version."""
        data = asdict(self)
        data["outputs"] = list(self.outputs)
        if self.precision == "float32":
            del data["precision"]
        return {"kind": self.kind, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncoderParams:
        """Build from ``to_dict``'s output; unknown fields and bad values raise ValueError."""
        values = {k: v for k, v in data.items() if k != "kind"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown encoder parameter {unknown[0]!r}; known: {sorted(known)}")
        if "outputs" in values:
            values["outputs"] = tuple(values["outputs"])
        return cls(**values)


# The precisions each encoder runs in (int8: worker.models.encoders.int8).
PRECISIONS = {"mn04": ("float32",), "msd_fcn": ("float32", "int8")}
# The level of each window before normalisation, stored beside the encoder's outputs.
LEVEL = "rms_db"
_FLOOR_DB = -120.0


def mn04_features() -> EncoderParams:
    """mn04 on up to 3 windows of 10 s (more measured no better), its AudioSet logits and the
    512-d embedding."""
    return EncoderParams(encoder="mn04", window_seconds=10.0, hop_seconds=10.0, max_windows=3)


def msd_fcn_features() -> EncoderParams:
    """msd_fcn on one 29 s window (the middle of a long track), its Last.fm tag logits and
    64-d embedding, its convolutions in int8 (2.4x faster per window; out-of-fold accuracy
    as in float32: BENCHMARKS.md, "Speed targets")."""
    return EncoderParams(
        encoder="msd_fcn",
        window_seconds=29.0,
        hop_seconds=29.0,
        max_windows=1,
        outputs=("logits", "emb64"),
        precision="int8",
    )


def _levels(audio: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of each row of ``audio`` ``[n, samples]``, floored at -120."""
    rms = np.sqrt(np.mean(np.square(audio, dtype=np.float64), axis=1))
    return np.maximum(20 * np.log10(np.maximum(rms, 1e-12)), _FLOOR_DB).astype(np.float32)


def encoder_outputs(*, audio: np.ndarray, params: EncoderParams) -> dict[str, np.ndarray]:
    """Run the encoder on each window: ``audio`` float32 ``[n, samples]`` mono at
    ``params.sample_rate`` Hz → ``{output: float32 [n, size]}`` for ``params.outputs``, and
    ``rms_db`` ``[n]``, each window's level before the windows are peak-normalised.

    The encoder is loaded once per process (its weights checked against
    ``params.weights_sha256``) and runs on the CPU without autograd.
    """
    import torch

    from worker.audio.decode import resample

    levels = _levels(audio)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if params.peak_dbfs is not None and peak > 0:
        audio = audio * np.float32(10 ** (params.peak_dbfs / 20) / peak)
    encoder = _runtime(params.encoder, params.weights_sha256, params.precision)
    rate = encoder_spec(params.encoder).sample_rate
    # soxr, as the decode: a steep filter matters here, since torchaudio's default sinc
    # (Hann, width 6) leaked energy above the source's Nyquist into the encoder's
    # spectrogram and moved AudioSet probabilities by up to 0.46 on GTZAN tracks.
    windows = np.stack([resample(row, rate=params.sample_rate, target_rate=rate) for row in audio])
    with torch.inference_mode():
        outputs = encoder(torch.from_numpy(windows))
    arrays = {name: getattr(outputs, name).float().numpy() for name in params.outputs}
    return {**arrays, LEVEL: levels}


@functools.lru_cache(maxsize=4)
def _runtime(name: str, sha256: str, precision: str = "float32") -> Any:
    """The encoder module as featurizing runs it (fused for inference, in ``precision``),
    built once per process."""
    spec = encoder_spec(name)
    if name == "mn04":
        from worker.models.encoders import mn04

        loaded = mn04.load_mn04(weights_path=spec.weights_path, expected_sha256=sha256)
        encoder: Any = mn04.fuse_for_inference(loaded)
    else:
        from worker.models.encoders import fcn

        encoder = fcn.fuse_for_inference(
            fcn.load_fcn(weights_path=spec.weights_path, expected_sha256=sha256)
        )
        if precision == "int8":
            from worker.models.encoders import int8

            encoder = int8.quantize_for_inference(encoder)
    return encoder
