"""Inference and training input: what each shipped model labels per second on a CPU, and
whether the training shard reader keeps each model fed.

    .venv/bin/python bench/bench_inference.py [--quick] [--tracks N] [--min-seconds S]

Two tables, side by side in one run (torch on one thread unless a column says otherwise):

- **Labelling**: rows per second of every arch ``genrectl train --arch`` accepts, through
  the model call of ``infer_shard`` (``predict_segments`` for the mel models, ``score_tracks``
  for the genre heads over stored encoder rows), at batch sizes 1, 4, 16, 64 and 256, and
  at 64 on two threads; and of the two pretrained encoders per window as featurizing runs
  them (``encoder_outputs``: level, peak normalisation, resampling, the fused network). A
  row is what one model input is: a 6 s mel segment, a track's stored encoder rows (3 mn04
  windows and one msd_fcn window), a 10 s or 29 s window. Each rate is timed for at least
  ``--min-seconds``; a batch that would take over ``--skip-seconds`` is not run.
- **Training input**: generated tracks written as library shards by the product's writer
  (the reference mel of a synthesized tune, through ``mel_db``; random encoder outputs of
  the stored shapes), read back as ``genrectl train --from-library`` reads them
  (``segment_set`` / ``head_data``: open, checksum, decompress), batched per epoch
  (``segment_batches``), against each model's training rate at the CLI's batch size 32
  (``train_one_epoch``; a head's whole fit, ``fit_tracks``). A ratio over 1 means the
  input outruns the model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrectl.settings import Settings
from tests.audio_fixtures import song
from worker.features.encoder import (
    EncoderParams,
    encoder_outputs,
    mn04_features,
    msd_fcn_features,
)
from worker.features.mel import FeatureParams, mel_db
from worker.features.sets import FeatureSet
from worker.features.shards import write_shard
from worker.inference.predict import Rows, predict_segments, score_tracks
from worker.models.cnn import build_model
from worker.models.encoders import encoder_spec
from worker.training.cache import FLUSH_TRACKS
from worker.training.data import TrainingData, segment_set
from worker.training.datasets import SegmentSet
from worker.training.headjob import design, empty_head, fit_tracks, head_data
from worker.training.loop import segment_batches, train_one_epoch
from worker.training.store import FeatureStore, TrainingTrack

MEL = FeatureParams()
GENRES: tuple[str, ...] = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)
BATCH_SIZES = (1, 4, 16, 64, 256)
TRAIN_BATCH = 32  # genrectl train --batch-size's default
PROBE_BATCH = 4  # a first training step this small says whether one of TRAIN_BATCH fits in time
# (arch, input size): the reference DenseNet on 224 x 224 images, and as `genrectl train` runs it.
MEL_ARCHS: tuple[tuple[str, str], ...] = (
    ("cnn", "native"),
    ("gapcnn", "native"),
    ("densenet121", "224"),
    ("densenet121", "native"),
)
HEAD_ARCHS = ("encoder-head", "mn04-zeroshot")
WINDOWS_PER_TRACK = {"mn04": 3, "msd_fcn": 1}  # the starters' feature sets: 30 s tracks
# A batch's time is judged from the last, smaller batch's rate times this: the encoders label
# fewer windows per second in larger batches (mn04: 29 at 16, 10 at 256 in the first run).
SLOWER_IN_LARGER_BATCHES = 1.5


@dataclass(frozen=True)
class Subject:
    """A model to label with: ``batch(n)`` prepares ``n`` input rows and returns the call
    that labels them; ``unit`` says what a row is and ``seconds`` how much audio it covers."""

    name: str
    unit: str
    seconds: float
    batch: Callable[[int], Callable[[], object]]


def mel_subject(arch: str, input_size: str) -> Subject:
    """A reference-mel classifier, untrained (the cost does not depend on the weights)."""
    model = build_model(arch=arch, n_classes=len(GENRES), input_size=input_size).eval()
    rng = np.random.default_rng(0)

    def batch(n: int) -> Callable[[], object]:
        mel = rng.uniform(-80, 0, (n, MEL.n_mels, MEL.n_frames)).astype(np.float16)
        return lambda: predict_segments(model, mel, batch_size=n)

    size = "3x224x224" if input_size == "224" else f"{MEL.n_mels}x{MEL.n_frames}"
    unit = f"6 s segment ({size})"
    return Subject(f"{arch} ({input_size})", unit, MEL.segment_seconds, batch)


def encoder_rows(params: EncoderParams, n_tracks: int, rng: np.random.Generator) -> Rows:
    """Random stored rows of ``n_tracks`` tracks for one encoder feature set."""
    per_track = WINDOWS_PER_TRACK[params.encoder]
    arrays = {
        name: rng.normal(size=(n_tracks * per_track, *shape)).astype(np.float32)
        for name, shape in params.shapes.items()
    }
    return Rows(arrays, np.repeat(np.arange(n_tracks), per_track))


def encoder_sets(arch: str) -> list[EncoderParams]:
    """The encoder feature sets a genre head reads, in its order."""
    return [s for s in design(arch).sets if isinstance(s, EncoderParams)]


def head_subject(arch: str, home: Path) -> Subject:
    """A genre head as ``empty_head`` builds it (zero-shot maps set, nothing fitted)."""
    head = empty_head(arch, GENRES, home)
    sets = encoder_sets(arch)
    rng = np.random.default_rng(0)

    def batch(n: int) -> Callable[[], object]:
        rows = [encoder_rows(s, n, rng) for s in sets]
        return lambda: score_tracks(head, rows)

    windows = " + ".join(f"{WINDOWS_PER_TRACK[s.encoder]} {s.encoder}" for s in sets)
    return Subject(arch, f"track ({windows} rows)", 30.0, batch)


def encoder_subject(params: EncoderParams) -> Subject:
    """A pretrained encoder in its fused inference form, on windows of a generated tune."""
    samples = round(params.window_seconds * params.sample_rate)
    tune = song(seconds=params.window_seconds, sample_rate=params.sample_rate)[:samples, 0]

    def batch(n: int) -> Callable[[], object]:
        audio = np.ascontiguousarray(np.broadcast_to(tune, (n, samples)))
        return lambda: encoder_outputs(audio=audio, params=params)

    rate = encoder_spec(params.encoder).sample_rate
    unit = f"{params.window_seconds:g} s window ({rate // 1000} kHz)"
    return Subject(f"{params.encoder} encoder", unit, params.window_seconds, batch)


def subjects(home: Path) -> list[Subject]:
    """Every model ``genrectl train --arch`` accepts, then the two pretrained encoders."""
    out = [mel_subject(arch, size) for arch, size in MEL_ARCHS]
    out += [head_subject(arch, home) for arch in HEAD_ARCHS]
    return [*out, encoder_subject(mn04_features()), encoder_subject(msd_fcn_features())]


def timed_rate(call: Callable[[], object], rows: int, *, min_seconds: float, warm: bool) -> float:
    """Rows per second of ``call`` (which handles ``rows`` rows), repeated for at least
    ``min_seconds`` (at least once), after one untimed call when ``warm``."""
    if warm:
        call()
    calls, began = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - began
        if elapsed >= min_seconds:
            return rows * calls / elapsed


def labelling_rates(
    subject: Subject,
    batch_sizes: Sequence[int],
    *,
    threads: int,
    min_seconds: float,
    skip_seconds: float,
    guess: float | None = None,
) -> dict[int, float | None]:
    """Rows per second by batch size on ``threads`` torch threads; None where a batch would
    take over ``skip_seconds`` (judged from the last rate, or ``guess``, with a margin)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rates: dict[int, float | None] = {}
        last = guess
        for n in batch_sizes:
            per_call = None if last is None else n / last * SLOWER_IN_LARGER_BATCHES
            if per_call is not None and per_call > skip_seconds:
                rates[n] = None
                continue
            warm = per_call is None or per_call < min_seconds / 2
            rates[n] = last = timed_rate(subject.batch(n), n, min_seconds=min_seconds, warm=warm)
        return rates
    finally:
        torch.set_num_threads(previous)


def _cell(rate: float | None) -> str:
    if rate is None:
        return "skipped (time)"
    return f"{rate:.1f}" if rate < 100 else f"{rate:.0f}"


def labelling_table(
    models: Sequence[Subject],
    batch_sizes: Sequence[int],
    *,
    threads_batch: int,
    min_seconds: float,
    skip_seconds: float,
) -> list[str]:
    """The first table: a row per model, rows/s per batch size, then on two threads."""
    header = [f"batch {n}" for n in batch_sizes] + [f"batch {threads_batch}, 2 threads"]
    lines = [
        "| model | one row is | " + " | ".join(header) + " | audio s per s (1 thread) |",
        "|---|---|" + "---|" * (len(header) + 1),
    ]
    for subject in models:
        rates = labelling_rates(
            subject, batch_sizes, threads=1, min_seconds=min_seconds, skip_seconds=skip_seconds
        )
        measured = [r for r in rates.values() if r is not None]
        two = labelling_rates(
            subject,
            [threads_batch],
            threads=2,
            min_seconds=min_seconds,
            skip_seconds=skip_seconds,
            guess=measured[-1],
        )
        cells = [_cell(rates[n]) for n in batch_sizes] + [_cell(two[threads_batch])]
        audio = f"{max(measured) * subject.seconds:.0f}"
        lines.append(f"| {subject.name} | {subject.unit} | " + " | ".join(cells) + f" | {audio} |")
    return lines


@dataclass(frozen=True)
class Library:
    """Generated tracks written as library shards: the training data over them (each track's
    rows located by feature version) and the shard bytes of each feature set."""

    data: TrainingData
    shard_bytes: dict[str, int]


def tune_mels(n_tunes: int) -> np.ndarray:
    """The reference mel of the first 30 s (5 segments) of ``n_tunes`` generated tunes:
    float32 ``[n_tunes, 5, n_mels, n_frames]`` dB (real spectra compress as GTZAN's do)."""
    out = []
    for seed in range(n_tunes):
        audio = song(seconds=30, sample_rate=MEL.sample_rate, seed=seed)[:, 0]
        segments = audio[: 5 * MEL.segment_samples].reshape(5, MEL.segment_samples)
        out.append(mel_db(segments=np.ascontiguousarray(segments), params=MEL))
    return np.stack(out)


def _shard_rows(
    feature_set: FeatureSet, tracks: range, tunes: np.ndarray, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The arrays of one shard holding ``tracks``, and the track of each row."""
    if isinstance(feature_set, FeatureParams):
        mel = np.concatenate([tunes[t % len(tunes)] for t in tracks])
        return {"mel": mel}, np.repeat(np.asarray(tracks), tunes.shape[1])
    rows = encoder_rows(feature_set, len(tracks), rng)
    return rows.arrays, rows.owner + tracks.start


def write_library(directory: Path, *, n_tracks: int, sets: Sequence[FeatureSet]) -> Library:
    """``n_tracks`` tracks of 30 s (genres in turn) in shards of FLUSH_TRACKS tracks per
    feature set, written by ``write_shard``: the mel of generated tunes, random encoder
    outputs (vectors; their values do not change the cost of reading them)."""
    tunes = tune_mels(min(n_tracks, 8))
    rng = np.random.default_rng(0)
    held: list[dict[str, list[tuple[str, str, int]]]] = [{} for _ in range(n_tracks)]
    shard_bytes = {}
    for feature_set in sets:
        version, shard_bytes[feature_set.version] = feature_set.version, 0
        for start in range(0, n_tracks, FLUSH_TRACKS):
            tracks = range(start, min(start + FLUSH_TRACKS, n_tracks))
            arrays, owner = _shard_rows(feature_set, tracks, tunes, rng)
            index = np.concatenate([np.arange(n) for n in np.bincount(owner - start)])
            info = write_shard(
                directory=directory,
                arrays=arrays,
                track_ids=owner,
                segment_index=index,
                start_s=index.astype(np.float32),
                params=feature_set,
            )
            shard_bytes[version] += info.path.stat().st_size
            for row, track in enumerate(owner.tolist()):
                held[track].setdefault(version, []).append((str(info.path), info.sha256, row))
    found = tuple(
        TrainingTrack(
            key=f"tune-{i:05d}",
            genre=GENRES[i % len(GENRES)],
            path=directory / f"tune-{i:05d}.wav",
            sha256=f"{i:064x}",
            library_segments={v: tuple(rows) for v, rows in held[i].items()},
        )
        for i in range(n_tracks)
    )
    return Library(TrainingData(found, GENRES), shard_bytes)


def mel_training_rate(
    arch: str,
    input_size: str,
    train: SegmentSet,
    *,
    batch_size: int,
    min_seconds: float,
    skip_seconds: float,
) -> tuple[int, float]:
    """(batch size, segments per second) that ``train_one_epoch`` trains ``arch`` at (AdamW,
    as ``fit``). A first step of PROBE_BATCH segments judges whether a step of
    ``batch_size`` would take over ``skip_seconds``: then the probe's batch size is used.
    One step first (timed: if it took ``min_seconds`` it is the answer), then enough steps
    to last ``min_seconds``."""
    torch.manual_seed(0)
    model = build_model(arch=arch, n_classes=len(GENRES), input_size=input_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)

    def epoch(steps: int, size: int) -> float:
        part = train.subset(np.arange(steps * size) % len(train))
        batches = segment_batches(part, batch_size=size, shuffle_seed=0)
        began = time.perf_counter()
        train_one_epoch(model, batches, optimizer=optimizer, device=torch.device("cpu"))
        return time.perf_counter() - began

    probe = min(PROBE_BATCH, batch_size)
    first = epoch(1, probe)
    size = batch_size
    if first / probe * batch_size * SLOWER_IN_LARGER_BATCHES > skip_seconds:
        size = probe
    elif size != probe:
        first = epoch(1, size)
    if first >= min_seconds:
        return size, size / first
    steps = max(2, int(np.ceil(min_seconds / first)))
    return size, steps * size / epoch(steps, size)


@dataclass(frozen=True)
class TrainingInput:
    """One model's training against its input, in rows per second: ``training`` (None for
    a model that trains nothing), the shard ``reader`` and its MB/s of shard files, and the
    per-epoch ``batches`` (None where the model fits on an in-memory table)."""

    name: str
    reads: str
    batch: str
    training: float | None
    reader: float
    reader_mb: float
    batches: float | None


def mel_inputs(
    library: Library,
    settings: Settings,
    archs: Sequence[tuple[str, str]],
    *,
    batch_size: int,
    min_seconds: float,
    skip_seconds: float,
) -> list[TrainingInput]:
    """The mel models' training against reading the library's mel shards."""
    data, store = library.data, FeatureStore(settings, MEL)
    train, _ = segment_set(data, data.keys, store)
    n = len(train)
    reader = timed_rate(
        lambda: segment_set(data, data.keys, store), n, min_seconds=min_seconds, warm=True
    )
    megabytes = reader * library.shard_bytes[MEL.version] / n / 1e6
    batches = timed_rate(
        lambda: sum(1 for _ in segment_batches(train, batch_size=batch_size, shuffle_seed=0)),
        n,
        min_seconds=min_seconds,
        warm=True,
    )
    found = []
    for arch, size in archs:
        used, training = mel_training_rate(
            arch,
            size,
            train,
            batch_size=batch_size,
            min_seconds=min_seconds,
            skip_seconds=skip_seconds,
        )
        batch = str(used) if used == batch_size else f"{used} ({batch_size}: skipped (time))"
        name = f"{arch} ({size})"
        found.append(
            TrainingInput(name, "mel segments", batch, training, reader, megabytes, batches)
        )
    return found


def head_input(
    library: Library, settings: Settings, arch: str, *, min_seconds: float
) -> TrainingInput:
    """A genre head's whole fit (inner CV included) against reading its encoder shards."""
    data, sets = library.data, encoder_sets(arch)
    stores = [FeatureStore(settings, s) for s in sets]
    n = len(data.tracks)
    read = lambda: head_data(settings, arch, data, stores, None)  # noqa: E731
    hd = read()
    reader = timed_rate(read, n, min_seconds=min_seconds, warm=False)
    megabytes = reader * sum(library.shard_bytes[s.version] for s in sets) / n / 1e6
    training = None
    if arch != "mn04-zeroshot":  # the zero-shot model has nothing to fit
        tracks = np.arange(n)
        fit = lambda: fit_tracks(arch, hd, tracks, folds_of=None, seed=0)  # noqa: E731
        training = timed_rate(fit, n, min_seconds=min_seconds, warm=False)
    reads = " + ".join(f"{s.encoder} rows" for s in sets) + " (tracks)"
    return TrainingInput(arch, reads, "all tracks", training, reader, megabytes, None)


def _ratio(rate: float | None, training: float | None) -> str:
    return "-" if rate is None or not training else f"{rate / training:.0f}x"


def training_table(
    home: Path,
    *,
    n_tracks: int,
    mel_archs: Sequence[tuple[str, str]] = MEL_ARCHS,
    head_archs: Sequence[str] = HEAD_ARCHS,
    batch_size: int = TRAIN_BATCH,
    min_seconds: float,
    skip_seconds: float,
) -> list[str]:
    """The second table: a row per model, its training rate beside its input's."""
    settings = Settings.from_env({"GENRECTL_HOME": str(home)})
    sets: list[FeatureSet] = [MEL, mn04_features(), msd_fcn_features()]
    library = write_library(settings.shard_dir, n_tracks=n_tracks, sets=sets)
    found = mel_inputs(
        library,
        settings,
        mel_archs,
        batch_size=batch_size,
        min_seconds=min_seconds,
        skip_seconds=skip_seconds,
    )
    found += [head_input(library, settings, a, min_seconds=min_seconds) for a in head_archs]
    lines = [
        "| model | training reads | batch | training rows/s | shard reader rows/s | reader MB/s "
        "| reader / training | epoch batches rows/s | batches / training | fed? |",
        "|" + "---|" * 10,
    ]
    for row in found:
        slowest = min(r for r in (row.reader, row.batches) if r is not None)
        fed = "-" if row.training is None else ("yes" if slowest >= row.training else "no")
        cells = (
            row.name,
            row.reads,
            row.batch,
            "no training" if row.training is None else _cell(row.training),
            _cell(row.reader),
            f"{row.reader_mb:.1f}",
            _ratio(row.reader, row.training),
            "-" if row.batches is None else _cell(row.batches),
            _ratio(row.batches, row.training),
            fed,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--tracks", type=int, default=256, help="library tracks for training")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="timing per rate")
    parser.add_argument("--skip-seconds", type=float, default=20.0, help="longest batch run")
    parser.add_argument("--train-batch", type=int, default=TRAIN_BATCH, help="training batch")
    args = parser.parse_args(argv)
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    threads_batch = 64
    if args.quick:
        batch_sizes, threads_batch = (1, 4), 4
        args.tracks, args.min_seconds, args.skip_seconds = min(args.tracks, 20), 0.1, 5.0
        args.train_batch = min(args.train_batch, 4)
    torch.set_num_threads(1)
    load = Path("/proc/loadavg")
    print(f"`{' '.join(['python', *sys.argv])}`")
    print(
        f"torch {torch.__version__}, 1 thread unless a column says 2; {os.cpu_count()} CPUs"
        + (f"; load average {load.read_text().split()[0]} at the start" if load.exists() else "")
    )
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        home = Path(tmp)
        print("\nLabelling, rows per second\n")
        table = labelling_table(
            subjects(home),
            batch_sizes,
            threads_batch=threads_batch,
            min_seconds=args.min_seconds,
            skip_seconds=args.skip_seconds,
        )
        print("\n".join(table), flush=True)
        print(f"\nTraining input, {args.tracks} library tracks of 30 s\n")
        table = training_table(
            home,
            n_tracks=args.tracks,
            batch_size=args.train_batch,
            min_seconds=args.min_seconds,
            skip_seconds=args.skip_seconds,
        )
        print("\n".join(table))
    if load.exists():
        print(f"\nload average {load.read_text().split()[0]} at the end")


if __name__ == "__main__":
    main()
