"""Featurizing throughput: decode + mel + shard write, in one process and in a process pool.

    .venv/bin/python bench/bench_featurize.py [--gtzan DIR] [--tracks N] [--mp3 N]

Inputs: GTZAN's 30 s 22050 Hz mono WAVs when --gtzan is given, else generated 30 s tracks of
tones, noise and clicks; a few of them converted to MP3 as they are and at 44.1 kHz stereo
(what a music library mostly holds). Lists are cycled to --tracks / --mp3 entries. Prints
one table: tracks/s, s/track, where the serial time goes, shard KB per 30 s track (5
segments). Shards hold --chunk tracks each. torch runs on one thread in the single process
and in each pool worker, so the two rows compare one core with all of them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.audio.decode import load_segments
from worker.features.mel import FeatureParams, mel_db
from worker.features.shards import write_shard

PARAMS = FeatureParams()
MAX_SEGMENTS = 20
MIN_SECONDS = 3.0


@dataclass
class Timing:
    decode: float = 0.0
    mel: float = 0.0
    write: float = 0.0
    shard_bytes: int = 0
    segments: int = 0
    tracks: int = 0


def featurize_chunk(paths: Sequence[Path], shard_dir: Path) -> Timing:
    """Featurize ``paths`` into one shard; returns where the time went."""
    timing = Timing(tracks=len(paths))
    mels, track_ids, indices, starts = [], [], [], []
    for track_id, path in enumerate(paths):
        began = time.perf_counter()
        track = load_segments(
            path, params=PARAMS, max_segments=MAX_SEGMENTS, min_seconds=MIN_SECONDS
        )
        decoded = time.perf_counter()
        mels.append(mel_db(segments=track.audio, params=PARAMS))
        timing.decode += decoded - began
        timing.mel += time.perf_counter() - decoded
        track_ids += [track_id] * len(track.starts_s)
        indices += range(len(track.starts_s))
        starts += track.starts_s
    began = time.perf_counter()
    info = write_shard(
        directory=shard_dir,
        arrays={"mel": np.concatenate(mels)},
        track_ids=np.asarray(track_ids),
        segment_index=np.asarray(indices),
        start_s=np.asarray(starts),
        params=PARAMS,
    )
    timing.write = time.perf_counter() - began
    timing.shard_bytes = info.path.stat().st_size
    timing.segments = info.n_segments
    return timing


def _one_thread() -> None:
    torch.set_num_threads(1)


def _chunks(paths: Sequence[Path], size: int) -> list[Sequence[Path]]:
    return [paths[i : i + size] for i in range(0, len(paths), size)]


def run_serial(paths: Sequence[Path], shard_dir: Path, chunk: int) -> tuple[float, Timing]:
    total = Timing()
    began = time.perf_counter()
    for part in _chunks(paths, chunk):
        timing = featurize_chunk(part, shard_dir)
        for name in ("decode", "mel", "write", "shard_bytes", "segments", "tracks"):
            setattr(total, name, getattr(total, name) + getattr(timing, name))
    return time.perf_counter() - began, total


def run_pool(paths: Sequence[Path], shard_dir: Path, chunk: int, workers: int) -> float:
    context = multiprocessing.get_context("spawn")  # torch is not fork-safe in general
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        warm = [pool.submit(featurize_chunk, paths[:1], shard_dir / "warm") for _ in range(workers)]
        for future in warm:
            future.result()
        began = time.perf_counter()
        chunks = _chunks(paths, chunk)
        list(pool.map(featurize_chunk, chunks, [shard_dir] * len(chunks)))
        return time.perf_counter() - began


def generated_tracks(directory: Path, n: int) -> list[Path]:
    """n 30 s mono 22050 Hz WAVs of tones, noise and clicks (seeded)."""
    rng = np.random.default_rng(0)
    t = np.arange(30 * 22050) / 22050
    paths = []
    for i in range(n):
        freqs = rng.uniform(80, 2000, 4)
        audio = sum(0.1 * np.sin(2 * np.pi * f * t) for f in freqs)
        audio = audio + 0.05 * rng.standard_normal(len(t)) + 0.3 * (np.arange(len(t)) % 11025 == 0)
        path = directory / f"generated-{i:03d}.wav"
        sf.write(str(path), np.clip(audio, -1, 1).astype(np.float32), 22050, subtype="PCM_16")
        paths.append(path)
    return paths


def to_mp3(paths: Sequence[Path], directory: Path, *, rate: int, channels: int) -> list[Path]:
    """MP3 copies of ``paths`` at ``rate`` Hz with ``channels`` identical channels."""
    out = []
    for path in paths:
        audio, source_rate = sf.read(str(path), dtype="float32")
        resampled = torchaudio.functional.resample(torch.from_numpy(audio), source_rate, rate)
        target = directory / f"{path.stem}-{rate}-{channels}ch.mp3"
        stacked = np.repeat(resampled.numpy()[:, None], channels, axis=1)
        sf.write(str(target), stacked, rate, format="MP3", subtype="MPEG_LAYER_III")
        out.append(target)
    return out


def _cycle(paths: Sequence[Path], n: int) -> list[Path]:
    """``n`` paths, repeating ``paths`` as needed (throughput is what is measured)."""
    return [paths[i % len(paths)] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gtzan", type=Path, help="GTZAN-layout folder of 30 s WAVs")
    parser.add_argument("--tracks", type=int, default=200, help="WAV tracks to featurize")
    parser.add_argument("--mp3", type=int, default=60, help="MP3 tracks to featurize (each kind)")
    parser.add_argument("--sources", type=int, default=20, help="distinct tracks made into MP3")
    parser.add_argument("--chunk", type=int, default=8, help="tracks per shard")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-featurize-"))
    try:
        if args.gtzan:
            wavs = sorted(args.gtzan.glob("*/*.wav"))
        else:
            wavs = generated_tracks(scratch, min(args.tracks, 100))
        sources = wavs[:: max(1, len(wavs) // args.sources)][: args.sources]
        inputs = {
            "WAV 22.05k mono": _cycle(wavs, args.tracks),
            "MP3 22.05k mono": _cycle(to_mp3(sources, scratch, rate=22050, channels=1), args.mp3),
            "MP3 44.1k stereo": _cycle(to_mp3(sources, scratch, rate=44100, channels=2), args.mp3),
        }
        _one_thread()
        featurize_chunk(wavs[:1], scratch / "warm")  # imports, kernels and caches out of the way
        print(
            f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, "
            "torch on 1 thread per process"
        )
        print(
            "| input | mode | tracks | wall s | tracks/s | s/track | decode/mel/write % "
            "| shard KB per 30 s track |\n|" + "---|" * 8
        )
        for label, paths in inputs.items():
            report(label, paths, scratch, args)
    finally:
        shutil.rmtree(scratch)


def _row(label: str, mode: str, n: int, wall: float, split: str, kb: str) -> str:
    cells = (label, mode, n, f"{wall:.2f}", f"{n / wall:.2f}", f"{wall / n:.3f}", split, kb)
    return "| " + " | ".join(map(str, cells)) + " |"


def report(label: str, paths: Sequence[Path], scratch: Path, args: argparse.Namespace) -> None:
    """Two table rows for ``paths``: one process, then the pool."""
    n = len(paths)
    wall, t = run_serial(paths, scratch / f"serial-{label.replace(' ', '-')}", args.chunk)
    busy = t.decode + t.mel + t.write
    split = "/".join(f"{100 * x / busy:.0f}" for x in (t.decode, t.mel, t.write))
    per_track = t.shard_bytes / t.segments * 30 / PARAMS.segment_seconds / 1024
    print(_row(label, "1 process", n, wall, split, f"{per_track:.0f}"))
    wall = run_pool(paths, scratch / f"pool-{label.replace(' ', '-')}", args.chunk, args.workers)
    print(_row(label, f"pool x{args.workers}", n, wall, "-", "same"))


if __name__ == "__main__":
    main()
