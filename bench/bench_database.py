"""The database at library scale: browsing, playlists and an unchanged re-ingest at 1M tracks.

    .venv/bin/python bench/bench_database.py [--tracks N] [--backends sqlite,postgresql]
        [--repeats R] [--before]

For each database (SQLite in a scratch folder; PostgreSQL as a database of its own on
127.0.0.1:5432, dropped after): migrate, fill it with a synthetic library of N tracks
(bench/synthetic_library.py: the promoted starter's predictions, two older models', user
labels, the starter's segment rows, loaded by COPY / executemany), and time the operations
below through the product's own query functions, each the median of --repeats runs with
warm caches (the ingest, seconds a run, of 3 runs without a warm-up). With --before the
library is loaded at revision 0006, timed, migrated to the head as `genrectl db upgrade`
does (timed), and timed again: what the indexes of migration 0007 bring.

- `tracks list --genre jazz --limit 50`: the first page (by path) and the count of all;
- `playlist show` / `playlist refresh` of a rule selecting about 500 tracks (reggae above a
  confidence chosen for it), and of a rule over a whole big genre cut to 500 tracks
  (jazz, by confidence, `--limit 500`);
- the database side of `genrectl ingest` over the unchanged library: `plan_ingest` given
  the scan's (path, size, mtime) of every file, and `previous_genres`, as tracks/s.

Prints one table: operation, backend, schema, N, the measure, the target, met or missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.orm import Session

from db.engine import dispose_engines, get_engine, session_scope
from db.listing import TrackFilter, count_labelled, track_page
from db.migrate import upgrade, upgrade_to
from db.models import Playlist
from db.playlists import evaluate_playlist, find_playlist, refresh_playlists
from db.registry import promoted_model
from genrectl.settings import Settings
from scheduler.batches import plan_ingest
from scheduler.labelling import previous_genres
from scheduler.scan import ScanResult
from worker.features.sets import model_feature_sets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_library import Library, generate

BEFORE = "b31674a81d3d"  # 0006_pipeline: the schema without the indexes of 0007
INGEST_REPEATS = 3
Key = tuple[str, str]  # (backend, schema revision)
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PAGE = 50
NARROW, BROAD = "bench reggae", "bench jazz 500"


@dataclass
class Measure:
    """One operation's median time in seconds per (backend, schema revision)."""

    name: str
    target: str
    met: Callable[[float, int], bool]  # (seconds, tracks) -> met?
    unit: str = "ms"  # or "tracks/s"
    seconds: dict[Key, float] = field(default_factory=dict)


def median_of(repeats: int, run: Callable[[], object], *, warm_up: bool = True) -> float:
    """The median time of ``repeats`` runs, after one that warms the caches (unless the
    runs take seconds each, where the first one's cold start hardly counts)."""
    if warm_up:
        run()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def list_first_page(settings: Settings, genre: str) -> None:
    with session_scope(settings) as session:
        page = track_page(session, TrackFilter(genres=(genre,)), sort="path", limit=PAGE)
        assert len(page) == PAGE, len(page)


def list_count(settings: Settings, genre: str) -> None:
    with session_scope(settings) as session:
        assert count_labelled(session, TrackFilter(genres=(genre,))) > PAGE


def playlist_show(settings: Settings, name: str) -> None:
    with session_scope(settings) as session:
        evaluate_playlist(session, find_playlist(session, name))


def playlist_refresh(settings: Settings, name: str) -> None:
    with session_scope(settings) as session:
        refresh_playlists(session, [name])


def unchanged_ingest(settings: Settings, library: Library) -> None:
    """What `genrectl ingest` asks of the database over an unchanged library, rolled back
    so that every repeat finds the same database."""
    engine = get_engine(settings)
    with Session(engine) as session:
        model = promoted_model(session)
        assert model is not None
        sets = {s.version: s.to_dict() for s in model_feature_sets(model.feature_params)}
        plan = plan_ingest(
            session,
            ScanResult(files=library.files),
            roots=library.roots,
            feature_sets=sets,
            model_id=model.id,
        )
        session.flush()
        previous_genres(session, model.id)
        assert plan.unchanged == library.usable, plan
        assert not plan.track_ids and not plan.label_only and not plan.missing
        session.rollback()


def add_playlists(settings: Settings, library: Library) -> None:
    with session_scope(settings) as session:
        session.add(
            Playlist(
                name=NARROW, genres=[library.rule_genre], min_confidence=library.rule_confidence
            )
        )
        session.add(Playlist(name=BROAD, genres=[library.list_genre], max_tracks=500))
    with session_scope(settings) as session:
        found = evaluate_playlist(session, find_playlist(session, NARROW))
        assert len(found) == library.rule_expected, (len(found), library.rule_expected)


def measures() -> list[Measure]:
    fast = "≤ 100 ms"

    def quick(seconds: float, _n: int) -> bool:
        return seconds <= 0.1

    return [
        Measure(f"tracks list --genre jazz: first {PAGE} by path", fast, quick),
        Measure("tracks list --genre jazz: count", fast, quick),
        Measure("playlist show, ~500-track rule", fast, quick),
        Measure("playlist refresh, ~500-track rule", fast, quick),
        Measure("playlist show, a genre cut to 500", fast, quick),
        Measure("playlist refresh, a genre cut to 500", fast, quick),
        Measure(
            "ingest of the unchanged library: database side",
            "≥ 20,000 tracks/s",
            lambda seconds, n: n / seconds >= 20_000,
            unit="tracks/s",
        ),
    ]


def run_all(
    settings: Settings, library: Library, table: list[Measure], key: Key, repeats: int
) -> None:
    genre = library.list_genre
    runs: list[Callable[[], object]] = [
        lambda: list_first_page(settings, genre),
        lambda: list_count(settings, genre),
        lambda: playlist_show(settings, NARROW),
        lambda: playlist_refresh(settings, NARROW),
        lambda: playlist_show(settings, BROAD),
        lambda: playlist_refresh(settings, BROAD),
        lambda: unchanged_ingest(settings, library),
    ]
    for measure, run in zip(table, runs, strict=True):
        slow = measure.unit == "tracks/s"
        times = INGEST_REPEATS if slow else repeats
        measure.seconds[key] = median_of(times, run, warm_up=not slow)
        cell = _cell(measure, key, library.n_tracks)
        print(f"  {' '.join(key)}: {measure.name}: {cell}", flush=True)


@contextmanager
def database(backend: str, scratch: Path) -> Iterator[Settings]:
    env = {"GENRECTL_HOME": str(scratch / backend), "GENRECTL_STARTER_MODEL": "0"}
    name = f"genrectl_bench_db_{os.getpid()}"
    if backend == "postgresql":
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        env["GENRECTL_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        yield Settings.from_env(env)
    finally:
        dispose_engines()
        if backend == "postgresql":
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_backend(
    backend: str, args: argparse.Namespace, table: list[Measure], scratch: Path
) -> dict[str, float]:
    with database(backend, scratch) as settings:
        upgrade_to(settings, BEFORE if args.before else "head")
        began = time.perf_counter()
        library = generate(get_engine(settings), args.tracks)
        generated = time.perf_counter() - began
        print(f"{backend}: {args.tracks:,} tracks generated in {generated:.1f} s", flush=True)
        add_playlists(settings, library)
        rule = f"{library.rule_genre} >= {library.rule_confidence}"
        print(f"  the ~500-track rule: {rule}: {library.rule_expected} tracks")
        info = {"generate_s": generated, "size_mb": _size(settings, backend, scratch)}
        if args.before:
            run_all(settings, library, table, (backend, "0006"), args.repeats)
            began = time.perf_counter()
            upgrade(settings)
            info["migrate_s"] = time.perf_counter() - began
            print(f"{backend}: migration 0007 applied in {info['migrate_s']:.1f} s", flush=True)
        run_all(settings, library, table, (backend, "head"), args.repeats)
        return info


def _size(settings: Settings, backend: str, scratch: Path) -> float:
    if backend == "sqlite":
        return sum(p.stat().st_size for p in (scratch / backend).glob("genrectl.db*")) / 1e6
    with get_engine(settings).connect() as connection:
        return (
            float(
                connection.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
                or 0
            )
            / 1e6
        )


def _cell(measure: Measure, key: tuple[str, str], n: int) -> str:
    seconds = measure.seconds.get(key)
    if seconds is None:
        return "–"
    if measure.unit == "tracks/s":
        return f"{n / seconds:,.0f}/s ({seconds:.1f} s)"
    return f"{seconds * 1000:.1f}"


def report(table: list[Measure], n: int, extras: dict[str, dict[str, float]]) -> None:
    print(f"\n{n:,} tracks; ms unless said: the median of the repeats, warm caches")
    print("| operation | backend | schema | N | measured | target | met? |")
    print("|---|---|---|---|---|---|---|")
    for m in table:
        for (backend, schema), seconds in m.seconds.items():
            met = "met" if m.met(seconds, n) else "missed"
            cell = _cell(m, (backend, schema), n)
            print(f"| {m.name} | {backend} | {schema} | {n:,} | {cell} | {m.target} | {met} |")
    for backend, info in extras.items():
        migrated = f", migration 0007 in {info['migrate_s']:.1f} s" if "migrate_s" in info else ""
        print(
            f"{backend}: generated in {info['generate_s']:.0f} s{migrated},"
            f" {info['size_mb']:,.0f} MB on disk"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--before", action="store_true", help="time at revision 0006 too, then migrate"
    )
    args = parser.parse_args()
    backends = args.backends.split(",")
    table = measures()
    extras = {}
    scratch = Path(tempfile.mkdtemp(prefix="bench-database-"))
    try:
        for backend in backends:
            extras[backend] = bench_backend(backend, args, table, scratch)
    finally:
        shutil.rmtree(scratch)
    report(table, args.tracks, extras)


if __name__ == "__main__":
    main()
