"""Engines and sessions. One engine per (process, URL): engines never cross a fork."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from genrectl.errors import ConfigError
from genrectl.faults import network_filesystem, storage_fault
from genrectl.settings import Settings

_engines: dict[tuple[int, str], Engine] = {}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the embedded worker processes write while the CLI reads progress.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def get_engine(settings: Settings) -> Engine:
    key = (os.getpid(), settings.database_url)
    engine = _engines.get(key)
    if engine is None:
        engine = _create(settings.database_url)
        _engines[key] = engine
    return engine


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            _prepare_sqlite_folder(Path(path))
        engine = create_engine(url, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql"):
        return create_engine(url, pool_pre_ping=True)
    raise ConfigError(
        f"GENRECTL_DATABASE_URL={url!r}: only sqlite:/// and postgresql+psycopg:// are supported"
    )


def _prepare_sqlite_folder(path: Path, mounts: str | None = None) -> None:
    """Create the database's folder; refuse a network share, on which SQLite's locks (and
    WAL's shared memory) do not hold and two processes would corrupt the database."""
    kind = network_filesystem(path.parent, mounts)
    if kind is not None:
        raise ConfigError(
            f"the database {path} would be on a network share ({kind}), where SQLite cannot "
            "lock it safely: keep GENRECTL_HOME on a local disk (GENRECTL_DATA_DIR may stay "
            "on the share), or use PostgreSQL (GENRECTL_DATABASE_URL)"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        hint = "GENRECTL_HOME (or GENRECTL_DATABASE_URL)"
        fault = storage_fault(exc, path=path.parent, what="the database", hint=hint)
        raise (fault or exc) from exc


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    # info: queries that keep files beside the database (db.vector_cache) find the settings.
    info = {"settings": settings}
    factory = sessionmaker(get_engine(settings), expire_on_commit=False, info=info)
    with factory() as session:
        session.info["settings"] = settings  # the user's genre tree (db.genretree)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
