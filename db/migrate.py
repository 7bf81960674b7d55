"""Schema migrations with Alembic, driven from code (no alembic.ini needed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from db.engine import get_engine
from genrectl.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(settings: Settings) -> str | None:
    with get_engine(settings).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(settings: Settings) -> bool:
    """Bring the schema to the newest revision. Returns True if anything was applied."""
    if current_revision(settings) == head_revision():
        return False
    with _sqlite_migration_lock(settings):
        # Two first runs in two terminals: the second waits here, then finds nothing to do.
        if current_revision(settings) == head_revision():
            return False
        upgrade_to(settings, "head")
    return True


@contextmanager
def _sqlite_migration_lock(settings: Settings) -> Iterator[None]:
    """An exclusive lock beside a SQLite database while it is migrated (PostgreSQL is
    migrated once, by `genrectl db upgrade`)."""
    url = settings.database_url
    path = url.split("///", 1)[-1] if url.startswith("sqlite") else ""
    if not path or path == ":memory:":
        yield
        return
    import fcntl

    with open(f"{path}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(settings: Settings) -> tuple[bool, str | None]:
    """Bring the schema to the newest revision, then register and promote the bundled
    starter model if the registry is empty (unless GENRECTL_STARTER_MODEL=0), so that no
    worker or command depends on which command ran first. Returns (schema changed, the
    starter's name if it was registered now)."""
    from sqlalchemy import select

    from db.engine import session_scope
    from db.models import Model
    from db.registry import ensure_starter

    changed = upgrade(settings)
    with session_scope(settings) as session:
        empty = session.scalar(select(Model.id).limit(1)) is None
        model = ensure_starter(session, settings) if empty else None
        return changed, None if model is None else model.name


def upgrade_to(settings: Settings, revision: str) -> None:
    """Bring the schema to ``revision`` (tests start from older ones)."""
    _migrate(settings, command.upgrade, revision)


def downgrade_to(settings: Settings, revision: str) -> None:
    """Take the schema back to ``revision`` (tests check that each migration undoes)."""
    _migrate(settings, command.downgrade, revision)


def _migrate(settings: Settings, step: Callable[[Config, str], None], revision: str) -> None:
    config = _config()
    with get_engine(settings).connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch migrations rebuild SQLite tables; with foreign keys on, dropping the old
            # table would cascade-delete every row that references it (segments, jobs...).
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                step(config, revision)
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def revision(settings: Settings, message: str) -> None:
    """Autogenerate a new revision (a developer's tool: `python -m db.migrate "message"`)."""
    config = _config()
    with get_engine(settings).begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        dev = Settings.from_env({"GENRECTL_HOME": tmp})
        upgrade(dev)
        revision(dev, sys.argv[1])
