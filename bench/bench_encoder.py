"""What the pretrained encoders cost: featurizing and labelling per track, bytes on disk.

    .venv/bin/python bench/bench_encoder.py [--gtzan DIR] [--tracks N]

On one torch thread, over GTZAN's 30 s WAVs (or generated tunes without --gtzan), side by
side in one run:

- featurize per track (decode once → features → shard), for the reference mel alone (what
  ingest computed for the gapcnn starter), mn04 alone, mn04 and msd_fcn (what the
  encoder-head starter needs), and all three from one decode;
- label per track from stored rows: the gapcnn starter's recipe on 5 mel segments against
  the encoder-head starter on 3 mn04 windows and one msd_fcn window;
- each encoder's own cost per window: resampling, and the network with its front end, as
  featurizing runs it (fused) beside the port as loaded from its weights;
- shard bytes per 30 s track for each feature set, and what storing mn04's input
  spectrograms instead of its outputs would cost (the choice README "Models" explains).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.audio_fixtures import song
from worker.audio.decode import resample as decode_resample
from worker.features.compute import featurize_file
from worker.features.encoder import _runtime, mn04_features, msd_fcn_features
from worker.features.mel import FeatureParams
from worker.features.shards import write_shard
from worker.inference.predict import Rows, score_tracks
from worker.models.cnn import build_model
from worker.training.headjob import empty_head

MEL, MN04, FCN = FeatureParams(), mn04_features(), msd_fcn_features()
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae")
GENRES += ("rock",)


def tracks(args: argparse.Namespace, scratch: Path) -> list[Path]:
    if args.gtzan:
        return sorted(args.gtzan.glob("*/*.wav"))[: args.tracks]
    paths = []
    for i in range(args.tracks):
        path = scratch / f"tune-{i:03d}.wav"
        sf.write(path, song(seconds=30, sample_rate=22050, seed=i), 22050, subtype="PCM_16")
        paths.append(path)
    return paths


def featurize_cost(paths: list[Path], sets: list, scratch: Path) -> tuple[float, dict[str, float]]:
    """Seconds per track, and shard KB per track by feature set."""
    rows: dict[str, list] = {s.version: [] for s in sets}
    began = time.perf_counter()
    for path in paths:
        featurized = featurize_file(path, sets=sets, max_segments=20, min_seconds=3.0)
        for version, found in featurized.rows.items():
            rows[version].append(found)
    seconds = (time.perf_counter() - began) / len(paths)
    kb = {}
    for feature_set in sets:
        found = rows[feature_set.version]
        info = write_shard(
            directory=scratch / "shards",
            arrays={n: np.concatenate([r.arrays[n] for r in found]) for n in feature_set.shapes},
            track_ids=np.concatenate([np.full(len(r.starts_s), i) for i, r in enumerate(found)]),
            segment_index=np.concatenate([np.arange(len(r.starts_s)) for r in found]),
            start_s=np.concatenate([r.starts_s for r in found]),
            params=feature_set,
        )
        name = getattr(feature_set, "encoder", feature_set.kind)
        kb[name] = info.path.stat().st_size / len(found) / 1024
    return seconds, kb


def label_cost(repeats: int, home: Path) -> dict[str, float]:
    """Milliseconds per 30 s track to label it from stored rows (100 tracks a call)."""
    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(100), 5)
    mel = [Rows({"mel": rng.uniform(-80, 0, (500, 90, 130)).astype(np.float32)}, owner)]
    windows, one = np.repeat(np.arange(100), 3), np.arange(100)
    encoders = [
        Rows({"logits": rng.normal(size=(300, 527)).astype(np.float32)}, windows),
        Rows(
            {
                "logits": rng.normal(size=(100, 50)).astype(np.float32),
                "emb64": rng.random((100, 64), np.float32),
            },
            one,
        ),
    ]
    models = (
        ("gapcnn, 5 mel segments", build_model(arch="gapcnn", n_classes=10).eval(), mel),
        ("encoder-head, 3 + 1 windows", empty_head("encoder-head", GENRES, home), encoders),
    )
    out = {}
    for name, model, rows in models:
        score_tracks(model, rows)
        began = time.perf_counter()
        for _ in range(repeats):
            score_tracks(model, rows)
        out[name] = 1000 * (time.perf_counter() - began) / repeats / 100
    return out


def encoder_cost(repeats: int) -> dict[str, float]:
    """Milliseconds per window of each encoder: resampling, front end, network."""
    from worker.models.encoders import ENCODERS
    from worker.models.encoders.fcn import load_fcn
    from worker.models.encoders.mn04 import load_mn04

    out = {}
    audio = song(seconds=30, sample_rate=22050)[:, 0].copy()
    for params in (MN04, FCN):
        encoder = _runtime(params.encoder, params.weights_sha256, "float32")
        shipped = _runtime(params.encoder, params.weights_sha256, params.precision)
        rate = ENCODERS[params.encoder].sample_rate

        def resample(
            window: np.ndarray, rate: int = rate, source: int = params.sample_rate
        ) -> torch.Tensor:
            row = decode_resample(window[0], rate=source, target_rate=rate)
            return torch.from_numpy(row)[None]

        load = load_mn04 if params.encoder == "mn04" else load_fcn
        port = load(weights_path=ENCODERS[params.encoder].weights_path)  # unfused, as ported
        samples = round(params.window_seconds * params.sample_rate)
        window = audio[:samples][None]
        front = encoder.front_end if params.encoder == "mn04" else None
        fused, int8 = "encoder (fused, float32)", "encoder (fused, int8 convolutions)"
        timings = {"resample": 0.0, "encoder (the port as loaded)": 0.0, fused: 0.0}
        if shipped is not encoder:
            timings[int8] = 0.0
        with torch.inference_mode():
            for _ in range(repeats):  # side by side, interleaved
                t0 = time.perf_counter()
                wave = resample(window)
                t1 = time.perf_counter()
                port(wave)
                t2 = time.perf_counter()
                encoder(wave)
                t3 = time.perf_counter()
                if int8 in timings:
                    shipped(wave)
                    timings[int8] += time.perf_counter() - t3
                timings["resample"] += t1 - t0
                timings["encoder (the port as loaded)"] += t2 - t1
                timings[fused] += t3 - t2
            if front is not None:
                kb = front(resample(window)).numel() * 2 / 1024
                out["mn04: its input spectrogram, KB per window (float16, raw)"] = kb
        for key, value in timings.items():
            out[f"{params.encoder} ({params.window_seconds:g} s window): {key}"] = (
                1000 * value / repeats
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gtzan", type=Path, help="GTZAN-layout folder of 30 s WAVs")
    parser.add_argument("--tracks", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-encoder-") as tmp:
        scratch = Path(tmp)
        paths = tracks(args, scratch)
        featurize_file(paths[0], sets=[MEL, MN04, FCN], max_segments=20, min_seconds=3.0)
        print(f"torch {torch.__version__}, 1 thread; {len(paths)} tracks of 30 s")
        print("| features computed | s per track | shard KB per track |\n|---|---|---|")
        for label, sets in (
            ("reference mel (the gapcnn starter's)", [MEL]),
            ("mn04 alone", [MN04]),
            ("mn04 + msd_fcn (the encoder-head starter's)", [MN04, FCN]),
            ("all three, one decode", [MEL, MN04, FCN]),
        ):
            seconds, kb = featurize_cost(paths, sets, scratch / str(len(sets)) / label[:4])
            print(
                f"| {label} | {seconds:.3f} | "
                + ", ".join(f"{k} {v:.1f}" for k, v in kb.items())
                + " |"
            )
        print("\n| labelling from stored rows | ms per track |\n|---|---|")
        for label, ms in label_cost(args.repeats, scratch).items():
            print(f"| {label} | {ms:.2f} |")
        status = Path("/proc/self/status")
        if status.exists():  # Linux: the peak resident set of this process so far
            peak_kb = int(status.read_text().split("VmHWM:")[1].split()[0])
            print(f"\npeak RSS of this process (both encoders loaded): {peak_kb / 1024:.0f} MB")
        print("\n| encoder, one window | ms |\n|---|---|")
        for label, ms in encoder_cost(args.repeats).items():
            print(f"| {label} | {ms:.1f} |")


if __name__ == "__main__":
    main()
