"""Moods, tempo and energy on a labelled GTZAN library: how the two encoders' moods agree,
what tempo and energy look like per genre, and what each costs per track.

There is no mood or tempo ground truth for these tracks: the encoders are compared with
each other (mn04's AudioSet mood classes against msd_fcn's Last.fm mood tags, Spearman
rank correlation and how often both put a track in their top fifth), and energy with the
moods that should move with it. Tempo has a ground truth only on the synthetic 120 BPM tune
of tests/audio_fixtures.py (its tests).

    GENRECTL_HOME=/tmp/gtzan-home genrectl ingest ../shared/data/gtzan-mini
    GENRECTL_HOME=/tmp/gtzan-home python bench/bench_moods.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from sqlalchemy import select

from db.engine import session_scope
from db.models import Track, TrackStatus
from db.registry import promoted_model
from genrectl.moods import MOODS
from genrectl.settings import Settings
from worker.audio.decode import load_windows
from worker.features.encoder import EncoderParams
from worker.features.rhythm import measure_rhythm
from worker.features.sets import model_feature_sets
from worker.inference.label import read_rows
from worker.inference.moods import encoder_probabilities, mood_scores
from worker.models.encoders import class_names

PAIRS = [
    ("Happy music", "happy"),
    ("Sad music", "sad"),
    ("Tender music", "Mellow"),
    ("Tender music", "beautiful"),
    ("Exciting music", "party"),
    ("Angry music", "heavy metal"),
]


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def top_fifth_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Of the tracks in a's top fifth, the share also in b's (chance: 0.2)."""
    k = max(1, len(a) // 5)
    top_a, top_b = set(np.argsort(-a)[:k].tolist()), set(np.argsort(-b)[:k].tolist())
    return len(top_a & top_b) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rhythm-tracks", type=int, default=100, help="tracks timed for tempo")
    args = parser.parse_args()
    settings = Settings.from_env()
    with session_scope(settings) as session:
        model = promoted_model(session)
        assert model is not None, "no promoted model: ingest a library first"
        tracks = session.execute(
            select(Track.id, Track.path).where(Track.status == TrackStatus.OK).order_by(Track.id)
        ).all()
        sets = model_feature_sets(model.feature_params)
        needed = [["logits"] if isinstance(s, EncoderParams) else [] for s in sets]
        ids = [t for t, _ in tracks]
        rows = read_rows(session, ids, sets, needed)
    genre = {t: Path(p).parent.name for t, p in tracks}

    started = time.perf_counter()
    scores = mood_scores(sets, rows)
    per_track_ms = 1000 * (time.perf_counter() - started) / len(ids)
    print(f"moods from stored logits: {per_track_ms:.3f} ms/track ({len(ids)} tracks)")

    found = encoder_probabilities(sets, rows)
    mn_tracks, mn = found["mn04"]
    fcn_tracks, fcn = found["msd_fcn"]
    assert (mn_tracks == fcn_tracks).all()
    mn_index = {c: i for i, c in enumerate(class_names("mn04"))}
    fcn_index = {c: i for i, c in enumerate(class_names("msd_fcn"))}
    print("\n| mn04 (AudioSet) | msd_fcn (Last.fm) | Spearman | both in top fifth |")
    print("|---|---|---|---|")
    for a, b in PAIRS:
        x, y = mn[:, mn_index[a]], fcn[:, fcn_index[b]]
        print(f"| {a} | {b} | {spearman(x, y):+.2f} | {top_fifth_overlap(x, y):.0%} |")

    print("\n| mood | median score | 85th percentile | max | tracks at threshold |")
    print("|---|---|---|---|---|")
    from genrectl.moods import THRESHOLDS

    for mood in MOODS:
        values = np.array([scores[t].get(mood, 0.0) for t in ids])
        over = int((values >= THRESHOLDS[mood]).sum())
        print(
            f"| {mood} | {np.median(values):.3f} | {np.percentile(values, 85):.3f} "
            f"| {values.max():.3f} | {over} |"
        )

    _rhythm(settings, tracks[: args.rhythm_tracks], sets, genre, scores)


def _rhythm(settings, tracks, sets, genre, scores) -> None:  # type: ignore[no-untyped-def]
    specs = [s.window_spec() for s in sets]
    seconds = [s.seconds for s in specs]
    longest = int(np.argmax(seconds))
    times, tempo, energy = [], {}, {}
    for track_id, path in tracks:
        _, decoded = load_windows(Path(path), sample_rate=22050, specs=specs, min_seconds=1.0)
        audio = decoded[longest].audio
        started = time.perf_counter()
        rhythm = measure_rhythm(audio=audio[len(audio) // 2], sample_rate=22050)
        times.append(1000 * (time.perf_counter() - started))
        if rhythm is not None:
            tempo[track_id], energy[track_id] = rhythm.tempo_bpm, rhythm.energy
    warm = times[1:] or times
    print(
        f"\ntempo + energy on one {seconds[longest]:g} s window: median "
        f"{statistics.median(warm):.1f} ms/track, p90 {np.percentile(warm, 90):.1f} "
        f"(first call {times[0]:.0f} ms: librosa's JIT)"
    )
    by_genre: dict[str, list[int]] = defaultdict(list)
    for track_id in tempo:
        by_genre[genre[track_id]].append(track_id)
    print("\n| genre | tracks | median tempo (BPM) | mean energy | mean 'exciting' |")
    print("|---|---|---|---|---|")
    for name in sorted(by_genre, key=lambda g: -np.mean([energy[t] for t in by_genre[g]])):
        members = by_genre[name]
        print(
            f"| {name} | {len(members)} | {statistics.median(tempo[t] for t in members):.0f} "
            f"| {np.mean([energy[t] for t in members]):.2f} "
            f"| {np.mean([scores[t].get('exciting', 0) for t in members]):.3f} |"
        )
    ids = sorted(energy)
    e = np.array([energy[t] for t in ids])
    for mood in ("exciting", "angry", "party", "tender", "mellow", "sad"):
        m = np.array([scores[t].get(mood, 0.0) for t in ids])
        print(f"energy vs {mood}: Spearman {spearman(e, m):+.2f}")


if __name__ == "__main__":
    main()
