"""What the pretrained encoder costs: featurizing and labelling per track, and bytes on disk.

    .venv/bin/python bench/bench_encoder.py [--gtzan DIR] [--tracks N]

On one torch thread, over GTZAN's 30 s WAVs (or generated tunes without --gtzan), side by
side in one run:

- featurize per track (decode once → features → shard), for the reference mel alone (what
  ingest computed before encoders), mn04's outputs alone (what the mn04 models need), and
  both from one decode;
- label per track from stored rows: the gapcnn starter's recipe on 5 mel segments against
  a genre head on 3 mn04 windows;
- the encoder's own cost per 10 s window: front end and network, alone and batched;
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
from worker.features.compute import featurize_file
from worker.features.encoder import EncoderParams, _runtime
from worker.features.mel import FeatureParams
from worker.features.shards import write_shard
from worker.inference.predict import predict_rows
from worker.models.cnn import build_model
from worker.models.encoders import class_names
from worker.models.heads import GenreHead
from worker.models.zeroshot import DEFAULT_ZEROSHOT_MAP, prior_indices

MEL, MN04 = FeatureParams(), EncoderParams()
GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae"]
GENRES.append("rock")


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
        kb[feature_set.kind] = info.path.stat().st_size / len(found) / 1024
    return seconds, kb


def label_cost(repeats: int) -> dict[str, float]:
    """Milliseconds per 30 s track to label it from stored rows."""
    gapcnn = build_model(arch="gapcnn", n_classes=10).eval()
    head = GenreHead(
        arch="mn04-head",
        n_classes=10,
        inputs=[("emb512", 512)],
        n_encoder_classes=527,
        prior_weight=1.0,
    )
    head.set_prior(prior_indices(GENRES, DEFAULT_ZEROSHOT_MAP, class_names("mn04")))
    mel = {"mel": np.random.default_rng(0).uniform(-80, 0, (5, 90, 130)).astype(np.float32)}
    rows = {
        "emb512": np.random.default_rng(1).normal(size=(3, 512)).astype(np.float32),
        "logits": np.random.default_rng(2).normal(size=(3, 527)).astype(np.float32),
    }
    out = {}
    for name, model, arrays in (
        ("gapcnn, 5 mel segments", gapcnn, mel),
        ("mn04 head, 3 windows", head, rows),
    ):
        predict_rows(model, arrays)
        began = time.perf_counter()
        for _ in range(repeats):
            predict_rows(model, arrays)
        out[name] = 1000 * (time.perf_counter() - began) / repeats
    return out


def encoder_cost(repeats: int) -> dict[str, float]:
    """Milliseconds per 10 s window: resampling, front end, network; 1 and 3 windows a call."""
    encoder, resample = _runtime(MN04.encoder, MN04.weights_sha256, MN04.sample_rate)
    audio = torch.from_numpy(song(seconds=30, sample_rate=22050)[:, 0].copy())
    windows = audio[: 3 * 220500].reshape(3, 220500)
    out = {}
    with torch.inference_mode():
        for batch in (1, 3):
            x = windows[:batch]
            timings = {"resample": 0.0, "front end": 0.0, "network": 0.0}
            for _ in range(repeats):
                t0 = time.perf_counter()
                wave = resample(x)
                t1 = time.perf_counter()
                spec = encoder.front_end(wave)
                t2 = time.perf_counter()
                encoder.net(spec)
                t3 = time.perf_counter()
                timings["resample"] += t1 - t0
                timings["front end"] += t2 - t1
                timings["network"] += t3 - t2
            for key, value in timings.items():
                out[f"{key}, {batch} window(s) a call"] = 1000 * value / repeats / batch
        spectrogram_bytes = encoder.front_end(resample(windows[:1])).numel() * 2  # float16
    out["stored input spectrogram, KB per window (float16, uncompressed)"] = (
        spectrogram_bytes / 1024
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
        featurize_file(paths[0], sets=[MEL, MN04], max_segments=20, min_seconds=3.0)  # warm up
        print(f"torch {torch.__version__}, 1 thread; {len(paths)} tracks of 30 s")
        print("| features computed | s per track | shard KB per track |\n|---|---|---|")
        for label, sets in (
            ("reference mel (before)", [MEL]),
            ("mn04 outputs (after)", [MN04]),
            ("both, one decode", [MEL, MN04]),
        ):
            seconds, kb = featurize_cost(paths, sets, scratch / label.split()[0])
            print(
                f"| {label} | {seconds:.3f} | "
                + ", ".join(f"{k} {v:.1f}" for k, v in kb.items())
                + " |"
            )
        print("\n| labelling from stored rows | ms per track |\n|---|---|")
        for label, ms in label_cost(args.repeats * 10).items():
            print(f"| {label} | {ms:.2f} |")
        print("\n| mn04 | ms per window |\n|---|---|")
        for label, ms in encoder_cost(args.repeats).items():
            print(f"| {label} | {ms:.1f} |")


if __name__ == "__main__":
    main()
