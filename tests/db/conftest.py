from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from db.engine import dispose_engines
from db.migrate import upgrade
from genrectl.settings import Settings
from tests.services import create_database, drop_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Migrated settings on SQLite and on a fresh PostgreSQL database."""
    env = {"GENRECTL_HOME": str(tmp_path / "home")}
    name = None
    if request.param == "postgresql":
        name, url = create_database()
        env["GENRECTL_DATABASE_URL"] = url
    settings = Settings.from_env(env)
    upgrade(settings)
    yield settings
    dispose_engines()
    if name:
        drop_database(name)
