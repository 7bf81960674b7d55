"""Album consistency at library scale: what one labelling chunk's albums cost, what a whole
relabel's cost, and a listing at album scope, on a synthetic library of N tracks.

    .venv/bin/python bench/bench_album_scale.py [--tracks N] [--backend sqlite|postgresql]

The library is bench_database's (bench/synthetic_library.py: ~12 tracks an album, the
promoted starter's predictions), with every track's album key set as ingest sets it. Then,
through the product's functions (db.albums.refresh_albums, db.listing):

- the albums of one labelling chunk (16 consecutive tracks, as ``infer_shard`` stores
  them), the median of 20 chunks spread over the library, ms;
- every album of the library, in chunks of 1,000 tracks (what a relabel adds), tracks/s;
- ``tracks list --genre jazz --scope album --limit 50`` and its count, beside the same at
  track scope, median of 5, ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.albums import refresh_albums
from db.engine import get_engine, session_scope
from db.listing import TrackFilter, count_labelled, track_page
from db.migrate import upgrade
from db.registry import promoted_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_database import database
from synthetic_library import generate

CHUNK = 16


def _ms(run: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=1_000_000)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, database(args.backend, Path(scratch)) as s:
        upgrade(s)
        started = time.perf_counter()
        engine = get_engine(s)
        library = generate(engine, args.tracks)
        sep = "char(31)" if args.backend == "sqlite" else "chr(31)"
        with engine.begin() as connection:
            connection.exec_driver_sql(
                f"UPDATE tracks SET album_key = 'tag:' || lower(artist) || {sep} || lower(album)"
            )
            # The statistics generate() took saw the key column empty: with them the planner
            # reads the whole library for an album (690 ms a chunk at 1M tracks).
            connection.exec_driver_sql("ANALYZE")
        print(
            f"{args.backend}: {library.n_tracks:,} tracks in {time.perf_counter() - started:.0f} s"
        )

        def chunk(first: int) -> None:
            with session_scope(s) as session:
                model = promoted_model(session)
                assert model is not None
                refresh_albums(session, model, range(first, first + CHUNK), threshold=0.35)

        step = args.tracks // 20
        times = []
        for i in range(20):
            started = time.perf_counter()
            chunk(1 + i * step)
            times.append((time.perf_counter() - started) * 1000)
        print(
            f"one chunk's albums ({CHUNK} tracks): {statistics.median(times):.1f} ms (median of 20)"
        )
        started = time.perf_counter()
        for first in range(1, args.tracks + 1, 1000):
            with session_scope(s) as session:
                model = promoted_model(session)
                assert model is not None
                refresh_albums(session, model, range(first, first + 1000), threshold=0.35)
        seconds = time.perf_counter() - started
        print(f"every album: {seconds:.0f} s, {args.tracks / seconds:,.0f} tracks/s")
        for scope in ("track", "album"):
            rule = TrackFilter(genres=(library.list_genre,), scope=scope)

            def page(rule: TrackFilter = rule) -> None:
                with session_scope(s) as session:
                    track_page(session, rule, limit=50)

            def count(rule: TrackFilter = rule) -> None:
                with session_scope(s) as session:
                    count_labelled(session, rule)

            with session_scope(s) as session:
                total = count_labelled(session, rule)
            print(
                f"tracks list --genre {library.list_genre} --scope {scope} --limit 50: "
                f"{_ms(page, 5):.1f} ms; its count ({total:,}): {_ms(count, 5):.1f} ms"
            )


if __name__ == "__main__":
    main()
