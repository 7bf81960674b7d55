"""Tiny, seeded audio rendered to real files in real formats, and broken files to refuse.

Signals are float32 arrays [frames, channels] at full scale 1.0. Writers use soundfile
(libsndfile) where it can write the format and PyAV (ffmpeg's encoders) elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf


def tone(
    *,
    seconds: float,
    sample_rate: int,
    freq: float = 440.0,
    amplitude: float = 0.3,
    channels: int = 1,
) -> np.ndarray:
    """A sine, the same in every channel: float32 [frames, channels]."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    wave = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(wave[:, None], channels, axis=1)


def noise(
    *, seconds: float, sample_rate: int, amplitude: float = 0.1, channels: int = 1, seed: int = 0
) -> np.ndarray:
    """Gaussian white noise, independent per channel: float32 [frames, channels]."""
    rng = np.random.default_rng(seed)
    shape = (round(seconds * sample_rate), channels)
    return (amplitude * rng.standard_normal(shape)).clip(-1, 1).astype(np.float32)


def clicks(
    *,
    seconds: float,
    sample_rate: int,
    every_s: float = 0.25,
    amplitude: float = 0.8,
    channels: int = 1,
) -> np.ndarray:
    """Single-sample impulses every ``every_s`` seconds: float32 [frames, channels]."""
    audio = np.zeros((round(seconds * sample_rate), channels), np.float32)
    audio[:: max(1, round(every_s * sample_rate))] = amplitude
    return audio


def music_like(*, seconds: float, sample_rate: int, channels: int = 1) -> np.ndarray:
    """Tone + noise + clicks: broadband and tonal, so lossy codecs keep something of each."""
    parts = (
        tone(seconds=seconds, sample_rate=sample_rate, channels=channels),
        noise(seconds=seconds, sample_rate=sample_rate, amplitude=0.05, channels=channels),
        clicks(seconds=seconds, sample_rate=sample_rate, amplitude=0.3, channels=channels),
    )
    return np.clip(sum(parts), -1, 1).astype(np.float32)


def song(*, seconds: float, sample_rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A synthesized tune at 120 BPM (kick, snare and hi-hat, a bass line, four chords, a
    random melody), peak 0.8: music to an audio tagger (mn04 calls it "Music" at 0.87),
    where ``music_like`` is only a signal. float32 [frames, channels]."""
    rng = np.random.default_rng(seed)
    sr, n, beat = sample_rate, round(seconds * sample_rate), 0.5
    out = np.zeros(n, np.float64)

    def add(start_s: float, wave: np.ndarray) -> None:
        i = round(start_s * sr)
        out[i : i + len(wave)] += wave[: max(0, n - i)]

    def envelope(length_s: float, decay: float) -> np.ndarray:
        t = np.arange(round(length_s * sr)) / sr
        return np.minimum(1, t / 0.005) * np.exp(-t / decay)

    def note(
        freq: float, length_s: float, decay: float, amp: float, partials: int = 4
    ) -> np.ndarray:
        t = np.arange(round(length_s * sr)) / sr
        wave = sum(
            np.sin(2 * np.pi * freq * k * t + rng.uniform(0, 6)) / k for k in range(1, partials + 1)
        )
        return amp * wave * envelope(length_s, decay)

    t_kick = np.arange(round(0.3 * sr)) / sr
    kick = (
        0.8 * np.sin(2 * np.pi * (50 + 100 * np.exp(-30 * t_kick)) * t_kick) * np.exp(-12 * t_kick)
    )
    snare = 0.3 * rng.standard_normal(round(0.2 * sr)) * envelope(0.2, 0.05)
    hat = 0.1 * np.diff(rng.standard_normal(round(0.05 * sr) + 1)) * envelope(0.05, 0.01)
    chords = [
        (261.6, 329.6, 392.0),
        (220.0, 261.6, 329.6),
        (174.6, 220.0, 261.6),
        (196.0, 246.9, 293.7),
    ]
    scale = [523.2, 587.4, 659.2, 784.0, 880.0, 1046.6]
    for bar in range(int(seconds / (4 * beat)) + 1):
        chord = chords[bar % 4]
        for b in range(4):
            at = (4 * bar + b) * beat
            add(at, kick if b % 2 == 0 else snare)
            add(at, hat)
            add(at + beat / 2, hat)
            add(at, note(chord[0] / 2, beat, 0.3, 0.3, partials=2))
            for freq in chord:
                add(at, note(freq, beat, 0.6, 0.06))
            for half in (0.0, beat / 2):
                add(at + half, note(scale[rng.integers(len(scale))], beat / 2, 0.2, 0.1))
    out *= 0.8 / max(1e-9, float(np.abs(out).max()))
    return np.repeat(out.astype(np.float32)[:, None], channels, axis=1)


@dataclass(frozen=True)
class Format:
    """How to write one kind of file. ``subtype`` is soundfile's, or PyAV's sample format."""

    suffix: str
    sample_rate: int
    channels: int
    container: str
    codec: str
    subtype: str = ""
    pyav: bool = False


FORMATS: dict[str, Format] = {
    "wav_pcm16": Format(".wav", 22050, 1, "WAV", "", "PCM_16"),
    "wav_pcm24_96k": Format(".wav", 96000, 2, "WAV", "", "PCM_24"),
    "wav_float32": Format(".wav", 44100, 2, "WAV", "", "FLOAT"),
    "wav_8k": Format(".wav", 8000, 1, "WAV", "", "PCM_16"),
    "wav_8ch": Format(".wav", 48000, 8, "WAV", "", "PCM_16"),
    "flac": Format(".flac", 44100, 2, "FLAC", "", "PCM_16"),
    "ogg_vorbis": Format(".ogg", 44100, 2, "OGG", "", "VORBIS"),
    "opus": Format(".opus", 48000, 2, "OGG", "", "OPUS"),
    "mp3": Format(".mp3", 44100, 2, "MP3", "", "MPEG_LAYER_III"),
    "aiff": Format(".aiff", 44100, 2, "AIFF", "", "PCM_16"),
    "au": Format(".au", 22050, 1, "AU", "", "PCM_16"),
    "m4a_aac": Format(".m4a", 44100, 2, "mp4", "aac", "fltp", pyav=True),
    "m4a_alac": Format(".m4a", 44100, 2, "mp4", "alac", "s16p", pyav=True),
    "adts_aac": Format(".aac", 44100, 2, "adts", "aac", "fltp", pyav=True),
    "wma": Format(".wma", 44100, 2, "asf", "wmav2", "fltp", pyav=True),
}


def _pyav_samples(chunk: np.ndarray, sample_format: str) -> np.ndarray:
    planar = np.ascontiguousarray(chunk.T)  # [channels, frames]
    if sample_format.startswith("s16"):
        planar = (np.clip(planar, -1, 1) * 32767).astype(np.int16)
    return planar if sample_format.endswith("p") else planar.T.reshape(1, -1)


def _write_pyav(path: Path, audio: np.ndarray, sample_rate: int, fmt: Format) -> None:
    layout = {1: "mono", 2: "stereo"}[audio.shape[1]]
    with av.open(str(path), "w", format=fmt.container) as container:
        stream = container.add_stream(fmt.codec, rate=sample_rate, layout=layout)
        stream.format = fmt.subtype
        stream.bit_rate = 128_000  # wmav2 refuses to open without one
        for start in range(0, len(audio), 1024):
            samples = _pyav_samples(audio[start : start + 1024], fmt.subtype)
            frame = av.AudioFrame.from_ndarray(samples, format=fmt.subtype, layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def write_audio(path: Path, audio: np.ndarray, *, sample_rate: int, fmt: Format) -> Path:
    """Encode ``audio`` [frames, channels] into ``path`` in format ``fmt``; returns path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt.pyav:
        _write_pyav(path, audio, sample_rate, fmt)
        return path
    # In blocks of a second: libsndfile's Vorbis encoder crashes (SIGSEGV) on one write of
    # a few minutes of noise.
    with sf.SoundFile(
        str(path), "w", sample_rate, audio.shape[1], format=fmt.container, subtype=fmt.subtype
    ) as out:
        for start in range(0, len(audio), sample_rate):
            out.write(audio[start : start + sample_rate])
    return path


SIGNALS: dict[str, Callable[..., np.ndarray]] = {
    "tone": tone,
    "noise": noise,
    "clicks": clicks,
    "music": music_like,
    "song": song,
}


def render(
    directory: Path, format_name: str, *, seconds: float = 7.0, signal: str = "music"
) -> Path:
    """A ``seconds`` long file of ``signal`` in the format named ``format_name`` (see FORMATS)."""
    fmt = FORMATS[format_name]
    audio = SIGNALS[signal](seconds=seconds, sample_rate=fmt.sample_rate, channels=fmt.channels)
    path = directory / f"{format_name}-{signal}-{seconds:g}s{fmt.suffix}"
    return write_audio(path, audio, sample_rate=fmt.sample_rate, fmt=fmt)


def _wav(path: Path, audio: np.ndarray, sample_rate: int = 22050, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), audio, sample_rate, format="WAV", subtype=subtype)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _corrupt_header(path: Path) -> Path:
    data = bytearray(_wav(path, tone(seconds=4, sample_rate=22050)).read_bytes())
    data[8:16] = b"GARBAGE!"  # where "WAVEfmt " belongs
    return _bytes(path, bytes(data))


def _truncated(path: Path, format_name: str, *, keep: float | int) -> Path:
    """A 13 s file cut to ``keep`` bytes, or to that fraction of its size."""
    source = render(path.parent / "whole", format_name, seconds=13.0).read_bytes()
    size = round(len(source) * keep) if isinstance(keep, float) else keep
    return _bytes(path, source[:size])


def _garbled_middle(path: Path, format_name: str) -> Path:
    """A 13 s file with 5000 random bytes written over its middle."""
    data = bytearray(render(path.parent / "whole", format_name, seconds=13.0).read_bytes())
    data[len(data) // 2 : len(data) // 2 + 5000] = np.random.default_rng(2).bytes(5000)
    return _bytes(path, bytes(data))


_SR = 22050
_BAD: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "empty": (".mp3", lambda p: _bytes(p, b"")),
    "mp3_half": (".mp3", lambda p: _truncated(p, "mp3", keep=0.5)),
    "mp3_100_bytes": (".mp3", lambda p: _truncated(p, "mp3", keep=100)),
    "m4a_half": (".m4a", lambda p: _truncated(p, "m4a_aac", keep=0.5)),
    "flac_garbled": (".flac", lambda p: _garbled_middle(p, "flac")),
    "random_flac": (".flac", lambda p: _bytes(p, np.random.default_rng(1).bytes(5000))),
    "text_wav": (".wav", lambda p: _bytes(p, b"this is not audio\n" * 20)),
    "corrupt_header_wav": (".wav", _corrupt_header),
    "silence": (".wav", lambda p: _wav(p, np.zeros((7 * _SR, 1), np.float32))),
    "quiet": (".wav", lambda p: _wav(p, tone(seconds=7, sample_rate=_SR, amplitude=10**-3.5))),
    "short": (".wav", lambda p: _wav(p, tone(seconds=0.5, sample_rate=_SR))),
    "nan_float": (
        ".wav",
        lambda p: _wav(p, np.full((7 * _SR, 1), np.nan, np.float32), _SR, "FLOAT"),
    ),
}
BAD_KINDS = tuple(_BAD)


def make_bad(directory: Path, kind: str) -> Path:
    """A file genrectl must refuse, of one of the kinds in BAD_KINDS."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix, maker = _BAD[kind]
    return maker(directory / f"{kind}{suffix}")
