"""How fast "more like this" is at library scale, on SQLite and PostgreSQL.

Builds a synthetic library (bench/synthetic_library.py: tracks, the starter's predictions,
artists) with one similarity vector per usable track (random unit vectors, 192-d float16, as
``worker.inference.vectors`` stores them), then times through the product's functions, as
the commands run them: ``playlist create --like`` (seed resolution, the rule saved, the
first refresh), ``playlist show`` and ``playlist refresh``, for three rules (warm: the
vectors' cache file written); and the parts of one evaluation: the vectors read from the
database (what the first use after a change costs) or mapped from the cache file, and
ranked.

    python bench/bench_similar.py --tracks 100000 [--backend sqlite --backend postgresql]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from bench.bench_database import database
from bench.synthetic_library import generate
from db.engine import get_engine, session_scope
from db.migrate import upgrade
from db.models import Playlist, Track, TrackStatus, TrackVector
from db.playlists import evaluate_playlist, find_playlist, refresh_playlists
from db.registry import starter_metadata
from db.similar import library_vectors, query_vector, ranked_chunks, scores
from genrectl.settings import Settings
from worker.features.sets import model_feature_sets
from worker.inference.vectors import vector_dim, vector_key

RULES: dict[str, dict[str, object]] = {
    "--like (no other rule), 50 tracks": {},
    "--like --genre reggae --max-per-artist 2, 50 tracks": {
        "genres": ["reggae"],
        "max_per_artist": 2,
    },
    "--like --exclude-genre rock --exclude-genre pop, 200 tracks": {
        "exclude_genres": ["rock", "pop"],
        "max_tracks": 200,
    },
}


def median_ms(repeats: int, run: Callable[[], object]) -> tuple[float, float]:
    """The median and the best of ``repeats`` runs after a warm-up, in ms (the best shows
    the cost on a machine that other work leaves alone)."""
    run()  # warm the caches
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times), 1000 * min(times)


def add_vectors(settings: Settings, *, seed: int = 0) -> tuple[str, list[int]]:
    """A random unit vector for every usable track; returns the key and the track ids."""
    rng = np.random.default_rng(seed)
    sets = model_feature_sets(starter_metadata()["feature_params"])  # type: ignore[index]
    key, dim = vector_key(sets), vector_dim(sets)
    with session_scope(settings) as session:
        ids = list(session.scalars(select_ok()))
    engine = get_engine(settings)
    for start in range(0, len(ids), 10_000):
        part = ids[start : start + 10_000]
        vectors = rng.standard_normal((len(part), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = [
            {"track_id": t, "key": key, "dim": dim, "vector": v.astype("<f2").tobytes()}
            for t, v in zip(part, vectors, strict=True)
        ]
        with engine.begin() as connection:
            connection.execute(insert(TrackVector), rows)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE track_vectors")
    return key, ids


def select_ok():  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    return select(Track.id).where(Track.status == TrackStatus.OK).order_by(Track.id)


def create_like(settings: Settings, name: str, seeds: list[int], rule: dict[str, object]) -> int:
    """What `playlist create NAME --like ... --replace` does in the database."""
    from cli.similar import resolve_seeds

    with session_scope(settings) as session:
        session.execute(delete(Playlist).where(Playlist.name == name))
        likes = resolve_seeds(session, tuple(map(str, seeds)))
        session.add(
            Playlist(
                name=name,
                genres=rule.get("genres", []),
                max_tracks=rule.get("max_tracks", 50),
                order_by="similarity",
                max_per_artist=rule.get("max_per_artist"),
                like_track_ids=likes,
                exclude_genres=rule.get("exclude_genres"),
            )
        )
        session.flush()
        (change,) = refresh_playlists(session, [name])
    return change.total


def bench_backend(
    backend: str, n: int, repeats: int, scratch: Path
) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    with database(backend, scratch) as settings:
        upgrade(settings)
        began = time.perf_counter()
        generate(get_engine(settings), n)
        key, ids = add_vectors(settings)
        took = time.perf_counter() - began
        print(f"{backend}: {n:,} tracks, {len(ids):,} vectors in {took:.0f} s", flush=True)
        seeds = [ids[len(ids) // 3], ids[len(ids) // 2]]

        def load_uncached() -> None:
            with Session(get_engine(settings)) as session:  # no settings: no cache file
                library_vectors(session, key)

        def load() -> None:
            with session_scope(settings) as session:
                library_vectors(session, key)

        with session_scope(settings) as session:
            library_vectors(session, key)  # writes the cache file
            loaded = library_vectors(session, key)  # maps it, as a warm evaluation does
            query = query_vector(session, key, seeds)
        out["vectors read from the database (first use after a change)"] = median_ms(
            repeats, load_uncached
        )
        out["vectors mapped from the cache file, with its state check"] = median_ms(repeats, load)

        def rank() -> None:
            similarity = scores(loaded[1], query)
            next(ranked_chunks(loaded[0], similarity, skip=seeds, first=100))

        out["similarity and the first ranked chunk (numpy)"] = median_ms(repeats, rank)
        for i, (label, rule) in enumerate(RULES.items()):
            name = f"bench like {i}"
            total = create_like(settings, name, seeds, rule)

            def create(name: str = name, rule: dict[str, object] = rule) -> None:
                create_like(settings, name, seeds, rule)

            def show(name: str = name) -> None:
                with session_scope(settings) as session:
                    evaluate_playlist(session, find_playlist(session, name))

            def refresh(name: str = name) -> None:
                with session_scope(settings) as session:
                    refresh_playlists(session, [name])

            out[f"create: {label}"] = median_ms(repeats, create)
            out[f"show: {label}"] = median_ms(repeats, show)
            out[f"refresh: {label}"] = median_ms(repeats, refresh)
            print(f"  {label}: {total} tracks", flush=True)
        for what, (median, best) in out.items():
            print(f"  {backend}: {what}: {median:,.1f} ms (best {best:,.1f})", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    backends = args.backend or ["sqlite", "postgresql"]
    with tempfile.TemporaryDirectory(prefix="bench-similar-") as scratch:
        results = {b: bench_backend(b, args.tracks, args.repeats, Path(scratch)) for b in backends}
    print(f"\n| operation ({args.tracks:,} tracks), median (best) ms | " + " | ".join(backends))
    print("|---|" + "---|" * len(backends))
    for what in results[backends[0]]:
        cells = [f"{results[b][what][0]:,.0f} ({results[b][what][1]:,.0f})" for b in backends]
        print(f"| {what} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
