"""Decode and resample per codec: every decoder available here against what ingest does.

    .venv/bin/python bench/bench_decode.py [--gtzan DIR] [--tracks N]

On the mixed library (``bench/library.py``: GTZAN tracks as MP3 192k, AAC/M4A, Vorbis, FLAC
and Opus at 44.1/48 kHz stereo), one process, one thread, milliseconds per 30 s track:

- decoding the whole file to float32 with soundfile (libsndfile) and with PyAV (ffmpeg),
  and PyAV with ffmpeg's own resampler (swr) to 22050 Hz mono in the decoder;
- resampling the decoded mono track to 22050 Hz with torchaudio's sinc (what ingest used
  before) and with soxr at "HQ" (librosa's default) and "VHQ";
- ingest's own decode (``load_windows`` for the windows the shipped starter uses: three
  10 s windows and one 29 s window of each track), against the fastest decoder + soxr HQ.

Without --gtzan the library is made from generated tunes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr
import torch
import torchaudio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from library import CODECS, codec_of, mixed_library

from tests.audio_fixtures import song
from worker.audio.decode import load_windows
from worker.features.encoder import mn04_features, msd_fcn_features

TARGET = 22050
Decoded = tuple[np.ndarray, int]


def soundfile_decode(path: Path) -> Decoded:
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def pyav_decode(path: Path) -> Decoded:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        parts = [frame.to_ndarray() for frame in container.decode(stream)]
        rate = stream.codec_context.sample_rate
    audio = np.concatenate(parts, axis=1)
    if audio.dtype != np.float32:  # integer PCM (FLAC, ALAC)
        audio = audio.astype(np.float32) / np.float32(np.iinfo(audio.dtype).max + 1)
    return audio.mean(axis=0), rate


def pyav_swr_decode(path: Path) -> Decoded:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET)
        parts = [
            out.to_ndarray()[0]
            for frame in [*container.decode(stream), None]
            for out in resampler.resample(frame)
        ]
    return np.concatenate(parts), TARGET


_TORCHAUDIO: dict[int, torchaudio.transforms.Resample] = {}


def torchaudio_resample(audio: np.ndarray, rate: int) -> np.ndarray:
    transform = _TORCHAUDIO.setdefault(rate, torchaudio.transforms.Resample(rate, TARGET))
    with torch.inference_mode():
        return transform(torch.from_numpy(audio)).numpy()


def _ms(run: Callable[[], object], repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return 1000 * best


INGEST = "ingest's decode (load_windows)"


def time_track(path: Path, specs: list) -> dict[str, float]:
    """method -> ms for one library file."""
    decoders = {"PyAV": pyav_decode, "PyAV + swr to 22050": pyav_swr_decode}
    if path.suffix != ".m4a":  # libsndfile has no AAC
        decoders["soundfile"] = soundfile_decode
    row = {name: _ms(partial(decoder, path)) for name, decoder in decoders.items()}
    audio, rate = pyav_decode(path)
    row["resample: torchaudio sinc"] = _ms(partial(torchaudio_resample, audio, rate))
    for quality in ("HQ", "VHQ"):
        row[f"resample: soxr {quality}"] = _ms(partial(soxr.resample, audio, rate, TARGET, quality))
    ingest = partial(load_windows, path, sample_rate=TARGET, specs=specs, min_seconds=3.0)
    row[INGEST] = _ms(ingest)
    return row


def measure(paths: list[Path]) -> dict[str, dict[str, list[float]]]:
    """codec -> method -> ms per track."""
    specs = [s.window_spec() for s in (mn04_features(), msd_fcn_features())]
    times: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in paths:
        for method, ms in time_track(path, specs).items():
            times[codec_of(path)][method].append(ms)
    return times


def report(times: dict[str, dict[str, list[float]]]) -> str:
    codecs = [c.name for c in CODECS if c.name in times]
    methods = list(dict.fromkeys(m for c in codecs for m in times[c]))
    lines = ["| ms per 30 s track (median) | " + " | ".join(codecs) + " |"]
    lines.append("|---" * (len(codecs) + 1) + "|")
    medians = {c: {m: statistics.median(v) for m, v in times[c].items()} for c in codecs}
    for method in methods:
        cells = [f"{medians[c][method]:.1f}" if method in medians[c] else "–" for c in codecs]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    ratio = []
    for c in codecs:
        m = medians[c]
        fastest = min(m[d] for d in ("soundfile", "PyAV") if d in m) + m["resample: soxr HQ"]
        ratio.append(f"{m[INGEST] / fastest:.2f}x")
    lines.append("| ingest / (fastest decoder + soxr HQ) | " + " | ".join(ratio) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gtzan", type=Path, help="GTZAN-layout folder of 30 s WAVs")
    parser.add_argument("--tracks", type=int, default=50, help="library files (codecs in turn)")
    parser.add_argument("--cache", type=Path, help="keep the transcoded library here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        if args.gtzan:
            sources = sorted(args.gtzan.glob("*/*.wav"))[:: max(1, 100 // args.tracks)]
        else:
            sources = []
            for i in range(args.tracks):
                sources.append(Path(scratch) / f"tune-{i:03d}.wav")
                sf.write(sources[-1], song(seconds=30, sample_rate=22050, seed=i), 22050)
        cache = args.cache or Path(scratch) / "library"
        paths = mixed_library(sources[: args.tracks], cache)
        for path in paths[: len(CODECS)]:  # warm up: libraries loaded, caches filled
            pyav_decode(path)
        print(f"{len(paths)} files, torch {torch.__version__}, 1 thread")
        print(report(measure(paths)))


if __name__ == "__main__":
    main()
