"""The mixed library the speed benches run on: GTZAN tracks transcoded the way a music
library holds them.

Five codecs in turn — MP3 192k, AAC in M4A, Vorbis, FLAC, Opus — at 44.1 or 48 kHz stereo
(Opus is always 48 kHz), made with the ffmpeg program. ``mixed_library`` makes one file
per source track; ``scaled_library`` makes ``n`` files from fewer sources by also slicing
each source at a different offset (looped, so every file is 30 s) with a small gain
change, so that no two files have the same bytes and an unchanged-file shortcut cannot
hide work. Files are cached under ``cache`` by name: a second run reuses them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Codec:
    """An ffmpeg encoding: the file suffix, encoder arguments and the output rate in Hz."""

    name: str
    suffix: str
    args: tuple[str, ...]
    rate: int


CODECS = (
    Codec("mp3", ".mp3", ("-c:a", "libmp3lame", "-b:a", "192k"), 44100),
    Codec("aac", ".m4a", ("-c:a", "aac", "-b:a", "192k"), 48000),
    Codec("vorbis", ".ogg", ("-c:a", "libvorbis", "-q:a", "5"), 44100),
    Codec("flac", ".flac", ("-c:a", "flac"), 48000),
    Codec("opus", ".opus", ("-c:a", "libopus", "-b:a", "128k"), 48000),
)


def codec_of(path: Path) -> str:
    """The codec name a library file was made with, from its suffix."""
    return next(c.name for c in CODECS if c.suffix == path.suffix)


def _transcode(
    source: Path, target: Path, codec: Codec, *, offset_s: float, gain_db: float
) -> None:
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.stem + ".part" + target.suffix)
    command = ["ffmpeg", "-nostdin", "-loglevel", "fatal", "-y"]
    if offset_s:  # start inside the track and wrap around: still 30 s, other bytes
        command += ["-stream_loop", "1", "-ss", f"{offset_s:.3f}"]
    command += ["-i", str(source), "-t", "30", "-ac", "2", "-ar", str(codec.rate)]
    command += ["-af", f"volume={gain_db:.2f}dB", *codec.args, str(partial)]
    subprocess.run(command, check=True)
    partial.rename(target)


def mixed_library(sources: Sequence[Path], cache: Path, *, workers: int = 2) -> list[Path]:
    """One file per source, the codecs in turn; returns the files in source order."""
    jobs = [
        (source, cache / f"{i:04d}-{source.stem}{codec.suffix}", codec, 0.0, 0.0)
        for i, source in enumerate(sources)
        for codec in [CODECS[i % len(CODECS)]]
    ]
    return _make(jobs, workers)


def scaled_library(sources: Sequence[Path], cache: Path, *, n: int, workers: int = 2) -> list[Path]:
    """``n`` files of 30 s from ``sources``: source, codec, offset and gain vary with the
    index so that every file's bytes differ."""
    jobs = []
    for i in range(n):
        source = sources[i % len(sources)]
        codec = CODECS[i % len(CODECS)]
        offset = (i // len(sources)) * 2.9 % 27.0
        gain = -0.1 * (i % 7)
        jobs.append((source, cache / f"{i:05d}-{source.stem}{codec.suffix}", codec, offset, gain))
    return _make(jobs, workers)


def _make(jobs: list[tuple[Path, Path, Codec, float, float]], workers: int) -> list[Path]:
    with ThreadPoolExecutor(workers) as pool:
        done = [
            pool.submit(_transcode, source, target, codec, offset_s=offset, gain_db=gain)
            for source, target, codec, offset, gain in jobs
        ]
        for future in done:
            future.result()
    return [target for _, target, _, _, _ in jobs]
