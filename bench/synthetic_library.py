"""A synthetic library of N tracks in a genrectl database, for bench_database.py.

What a library labelled by the starter looks like after its first ingest: tracks in path
order (artist/album/number title.ext), about 12 tracks an album and 10 albums an artist;
0.5 % failed; every usable track with the starter's segment rows (3 mn04 windows and one
msd_fcn window, in shards of 64 tracks) and the promoted starter's prediction (genres
skewed as a real collection is, an artist mostly in one genre, 10 % ``unknown``); two older
models' predictions on 60 % and 20 % of the tracks; 0.2 % of tracks labelled by the user.

Rows go in by the fastest route each database has (COPY into PostgreSQL, executemany into
SQLite; segments by INSERT ... SELECT), not through the product: only the queries that are
measured go through it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, text

from db.registry import starter_metadata
from scheduler.scan import FileStat
from worker.features.sets import model_feature_sets

GENRES = [
    "blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock",
]  # fmt: skip
# A collection's genre mix (rock-heavy, little reggae), and how often the model says unknown.
GENRE_SHARE = np.array([5, 8, 6, 4, 9, 10, 6, 15, 3, 22], dtype=float)
UNKNOWN_SHARE = 0.10
THRESHOLD = 0.35
EXTENSIONS = ["flac", "mp3", "m4a", "ogg", "opus"]
WORDS = [
    "red", "blue", "night", "river", "stone", "glass", "paper", "silver", "golden", "electric",
    "quiet", "broken", "wild", "velvet", "neon", "summer", "winter", "northern", "southern",
    "lonely", "happy", "midnight", "morning", "ocean", "desert", "city", "fire", "rain",
    "thunder", "echo", "shadow", "crystal", "iron", "honey",
]  # fmt: skip
TRACKS_PER_SHARD = 64
LOADED = ("tracks", "predictions", "user_labels", "shards", "segments")
CHUNK_ROWS = 50_000


@dataclass
class Library:
    """What the bench needs to know about the generated library."""

    n_tracks: int
    files: list[FileStat]  # every track's (path, size, mtime) as a scan would find it
    roots: list[str]
    promoted: str  # the promoted model's name
    list_genre: str  # a big genre, for `tracks list --genre`
    rule_genre: str  # the narrow playlist rule: this genre ...
    rule_confidence: float  # ... at least this confident
    rule_expected: int  # tracks the rule should select
    usable: int  # tracks featurized (status ok); the rest failed


def _name(rng: np.random.Generator, words: int) -> str:
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), words)).title()


def _timestamp(dialect: str, moment: datetime) -> Any:
    # SQLAlchemy stores SQLite datetimes as naive text in this format.
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else moment


def _load(
    connection: Connection, table: str, columns: Sequence[str], rows: Iterator[tuple]
) -> None:
    """Append ``rows`` to ``table`` by the database's fastest bulk route."""
    raw = connection.connection.driver_connection
    assert raw is not None
    quoted = ", ".join(f'"{c}"' for c in columns)
    if connection.dialect.name == "postgresql":
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(columns))
    cursor = raw.cursor()
    batch: list[tuple] = []
    for row in rows:
        batch.append(row)
        if len(batch) == CHUNK_ROWS:
            cursor.executemany(f"INSERT INTO {table} ({quoted}) VALUES ({marks})", batch)
            batch = []
    if batch:
        cursor.executemany(f"INSERT INTO {table} ({quoted}) VALUES ({marks})", batch)
    cursor.close()


@dataclass
class _Draws:
    """Per-track random choices, drawn at once with numpy."""

    artist: np.ndarray
    status: np.ndarray  # "ok" or "failed"
    genre: np.ndarray  # index into GENRES, -1 for unknown
    confidence: np.ndarray
    user: np.ndarray  # index into GENRES, -1 for no user label


def _draw(rng: np.random.Generator, n: int) -> _Draws:
    per_artist = 120
    artist = np.arange(n) // per_artist
    artist_genre = rng.choice(len(GENRES), size=artist[-1] + 1, p=GENRE_SHARE / GENRE_SHARE.sum())
    genre = np.where(rng.random(n) < 0.8, artist_genre[artist], rng.choice(len(GENRES), size=n))
    unknown = rng.random(n) < UNKNOWN_SHARE
    genre = np.where(unknown, -1, genre)
    confidence = np.where(
        unknown,
        rng.uniform(0.15, THRESHOLD, n),
        THRESHOLD + (1 - THRESHOLD) * rng.beta(2.0, 1.5, n),
    )
    status = np.where(rng.random(n) < 0.005, "failed", "ok")
    user = np.where(rng.random(n) < 0.002, rng.choice(len(GENRES), size=n), -1)
    return _Draws(artist, status, genre, confidence, user)


def generate(engine: Engine, n: int, *, seed: int = 0) -> Library:
    """Fill an empty, migrated database with a library of ``n`` tracks."""
    rng = np.random.default_rng(seed)
    draws = _draw(rng, n)
    dialect = engine.dialect.name
    now = _timestamp(dialect, datetime(2026, 12, 1, tzinfo=UTC))
    with engine.begin() as connection, _bulk_loading(connection):
        files = _tracks(connection, rng, draws, now)
        model_ids = _models(connection, now)
        _predictions(connection, rng, draws, model_ids, now)
        _user_labels(connection, draws, now)
        _segments(connection, n, now)
    if dialect == "postgresql":
        with engine.begin() as connection:
            for table in ("tracks", "models", "shards"):  # COPY set the ids, not the sequences
                connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    return _describe(n, files, draws)


@contextmanager
def _bulk_loading(connection: Connection) -> Iterator[None]:
    """Load without the secondary indexes of the tables filled here, and build them after
    (a sorted build, far faster than keeping them up to date row by row); in PostgreSQL
    without the foreign-key triggers too (the rows are consistent by construction)."""
    sqlite = connection.dialect.name == "sqlite"
    tables = ", ".join(f"'{t}'" for t in LOADED)
    if sqlite:
        connection.exec_driver_sql("PRAGMA cache_size=-500000")  # 500 MB while loading
        found = connection.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            f" AND tbl_name IN ({tables})"
        )
    else:
        connection.exec_driver_sql("SET session_replication_role = replica")
        found = connection.exec_driver_sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
            f"({tables}) AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        )
    indexes = found.all()
    for name, _ in indexes:
        connection.exec_driver_sql(f'DROP INDEX "{name}"')
    yield
    for _, definition in indexes:
        connection.exec_driver_sql(definition)
    if not sqlite:
        connection.exec_driver_sql("SET session_replication_role = DEFAULT")


def _describe(n: int, files: list[FileStat], draws: _Draws) -> Library:
    usable = draws.status == "ok"
    rule_genre = GENRES.index("reggae")
    candidates = np.sort(draws.confidence[usable & (draws.genre == rule_genre) & (draws.user < 0)])
    users = int(np.sum(usable & (draws.user == rule_genre)))
    want = max(1, 500 - users)
    cut = float(candidates[-want]) if len(candidates) >= want else 0.0
    cut = np.floor(cut * 1000) / 1000  # a rule a user would type: three decimals
    expected = int(np.sum(candidates >= cut)) + users
    return Library(
        n_tracks=n,
        files=files,
        roots=["/bench/music"],
        promoted="starter-encoders",
        list_genre="jazz",
        rule_genre="reggae",
        rule_confidence=float(cut),
        rule_expected=expected,
        usable=int(np.sum(usable)),
    )


def _tracks(
    connection: Connection, rng: np.random.Generator, draws: _Draws, now: Any
) -> list[FileStat]:
    n = len(draws.artist)
    artists = [f"{_name(rng, 2)} {a:05d}" for a in range(int(draws.artist[-1]) + 1)]
    sizes = rng.integers(2_000_000, 60_000_000, n)
    mtimes = rng.integers(1_300_000_000, 1_760_000_000, n) * 1_000_000_000 + rng.integers(
        0, 1_000_000_000, n
    )
    durations = rng.uniform(90, 420, n)
    titles = [_name(rng, 3) for _ in range(200)]
    files: list[FileStat] = []
    rows = []
    for i in range(n):
        album, number = divmod(i % 120, 12)
        artist = artists[draws.artist[i]]
        title = titles[(i * 7919) % len(titles)]
        path = (
            f"/bench/music/{artist}/Album {album:02d}/{number + 1:02d} {title}.{EXTENSIONS[i % 5]}"
        )
        files.append(FileStat(path=path, size=int(sizes[i]), mtime_ns=int(mtimes[i])))
        failed = draws.status[i] == "failed"
        rows.append(
            (
                i + 1,
                path,
                int(sizes[i]),
                int(mtimes[i]),
                hashlib.sha256(path.encode()).hexdigest(),
                str(draws.status[i]),
                "cannot decode: invalid data found when processing input" if failed else None,
                None if failed else float(durations[i]),
                None if failed else 44100,
                None if failed else 2,
                EXTENSIONS[i % 5],
                artist,
                title,
                f"Album {album:02d}",
                GENRES[int(draws.genre[i])].title() if draws.genre[i] >= 0 and i % 3 else None,
                now,
                now,
            )
        )
    columns = [
        "id", "path", "size", "mtime_ns", "content_hash", "status", "error", "duration_s",
        "sample_rate", "channels", "codec", "artist", "title", "album", "genre_tag", "added_at",
        "updated_at",
    ]  # fmt: skip
    _load(connection, "tracks", columns, iter(rows))
    return files


def _models(connection: Connection, now: Any) -> list[int]:
    """The promoted starter and two older models; returns their ids, promoted first."""
    meta = starter_metadata()
    assert meta is not None, "the bundled starter.json is needed"
    rows = []
    for model_id, (name, arch, promoted) in enumerate(
        [("starter-encoders", meta["arch"], True), ("gapcnn-2025", "gapcnn", False),
         ("densenet-trial", "densenet121", False)],
        start=1,
    ):  # fmt: skip
        rows.append(
            (
                model_id, name, arch, "native", json.dumps(GENRES), meta["feature_version"],
                json.dumps(meta["feature_params"]), f"/bench/models/{name}.pt", "0" * 64,
                json.dumps({}), json.dumps({}), promoted, now,
            )
        )  # fmt: skip
    columns = [
        "id", "name", "arch", "input_size", "classes", "feature_version", "feature_params",
        "path", "sha256", "training", "metrics", "promoted", "created_at",
    ]  # fmt: skip
    _load(connection, "models", columns, iter(rows))
    return [1, 2, 3]


def _prediction_rows(
    rng: np.random.Generator, draws: _Draws, model_id: int, share: float, now: Any
) -> Iterator[tuple]:
    n = len(draws.artist)
    take = (draws.status == "ok") & (rng.random(n) < share)
    top = np.where(draws.genre >= 0, draws.genre, np.arange(n) % len(GENRES))
    if model_id != 1:  # an older model disagrees on 30 % of the tracks
        moved = (top + rng.integers(0, len(GENRES), n)) % len(GENRES)
        top = np.where(rng.random(n) < 0.3, moved, top)
    music = rng.uniform(0.6, 0.99, n)
    tags = '[["Guitar", 0.41], ["Drum kit", 0.22]]' if model_id == 1 else None
    # JSON text written directly: json.dumps of 2M rows would be most of the load's time.
    for i in np.flatnonzero(take):
        genre, confidence = GENRES[top[i]], float(draws.confidence[i])
        high, rest = f"{confidence:.6f}", f"{(1 - confidence) / (len(GENRES) - 1):.6f}"
        probs = [rest] * len(GENRES)
        probs[top[i]] = high
        second, third = GENRES[(top[i] + 1) % len(GENRES)], GENRES[(top[i] + 2) % len(GENRES)]
        unknown = draws.genre[i] < 0 and model_id == 1
        yield (
            int(i) + 1,
            model_id,
            "unknown" if unknown else genre,
            genre,
            confidence,
            f"unclear genre: {genre} {confidence:.0%} is below the 35% threshold"
            if unknown
            else None,
            float(music[i]) if model_id == 1 else None,
            tags,
            f'[["{genre}", {high}], ["{second}", {rest}], ["{third}", {rest}]]',
            f"[{', '.join(probs)}]",
            THRESHOLD,
            now,
        )


def _predictions(
    connection: Connection, rng: np.random.Generator, draws: _Draws, model_ids: list[int], now: Any
) -> None:
    columns = [
        "track_id", "model_id", "genre", "top_genre", "confidence", "reason", "music", "tags",
        "top3", "probabilities", "threshold", "created_at",
    ]  # fmt: skip
    for model_id, share in zip(model_ids, (1.0, 0.6, 0.2), strict=True):
        _load(
            connection, "predictions", columns, _prediction_rows(rng, draws, model_id, share, now)
        )


def _user_labels(connection: Connection, draws: _Draws, now: Any) -> None:
    rows = ((int(i) + 1, GENRES[int(draws.user[i])], now) for i in np.flatnonzero(draws.user >= 0))
    _load(connection, "user_labels", ["track_id", "genre", "created_at"], rows)


def _segments(connection: Connection, n: int, now: Any) -> None:
    """The starter's rows: its feature sets' windows, in shards of TRACKS_PER_SHARD tracks."""
    meta = starter_metadata()
    assert meta is not None
    sets = model_feature_sets(meta["feature_params"])
    per_set = -(-n // TRACKS_PER_SHARD)
    shard_rows = (
        (k * per_set + s + 1, f"/bench/data/shards/{fs.version}/{s:06d}.h5", "0" * 64, fs.version,
         TRACKS_PER_SHARD * fs.max_windows, now)
        for k, fs in enumerate(sets)
        for s in range(per_set)
    )  # fmt: skip
    columns = ["id", "path", "sha256", "feature_version", "n_segments", "created_at"]
    _load(connection, "shards", columns, shard_rows)
    for k, fs in enumerate(sets):
        windows = " UNION ALL ".join(f"SELECT {w} AS w" for w in range(fs.max_windows))
        connection.execute(
            text(
                'INSERT INTO segments (track_id, shard_id, feature_version, "row", "index", '
                "start_s) SELECT t.id, (t.id - 1) / :per_shard + :base, :version, "
                "((t.id - 1) % :per_shard) * :windows + w.w, w.w, w.w * :hop "
                f"FROM tracks t CROSS JOIN ({windows}) w WHERE t.status = 'ok' ORDER BY t.id, w.w"
            ),
            {
                "per_shard": TRACKS_PER_SHARD,
                "base": k * per_set + 1,
                "version": fs.version,
                "windows": fs.max_windows,
                "hop": fs.hop_seconds,
            },
        )
