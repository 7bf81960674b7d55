"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from db.engine import dispose_engines
from db.migrate import upgrade
from genrectl.settings import Settings
from tests.audio_fixtures import make_bad, render
from tests.services import create_database, drop_database

RenderAudio = Callable[..., Path]

# No warm worker unless a test asks for one (tests/scheduler/test_warm.py): each test's home
# would otherwise keep a resident process of ~1 GB for GENRECTL_WARM_SECONDS after it.
# Commands run in tests thus spawn their own worker processes, as with the setting at 0.
os.environ.setdefault("GENRECTL_WARM_SECONDS", "0")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop any warm worker a test left behind (its home is under the session's temp)."""
    from scheduler.warm import stop_workers_under

    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        stop_workers_under(factory.getbasetemp())


@pytest.fixture(scope="session")
def render_audio(tmp_path_factory: pytest.TempPathFactory) -> RenderAudio:
    """``render_audio(format_name, seconds=7.0, signal="music") -> Path``: a real audio file
    (see tests/audio_fixtures.FORMATS), rendered once per session and shared."""
    directory = tmp_path_factory.mktemp("audio")
    cache: dict[tuple[str, float, str], Path] = {}

    def get(format_name: str, seconds: float = 7.0, signal: str = "music") -> Path:
        key = (format_name, seconds, signal)
        if key not in cache:
            cache[key] = render(directory, format_name, seconds=seconds, signal=signal)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def bad_audio(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``bad_audio(kind) -> Path``: a broken or unusable file (tests/audio_fixtures.BAD_KINDS)."""
    directory = tmp_path_factory.mktemp("bad-audio")
    return lambda kind: make_bad(directory / kind, kind)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spoken sentence from espeak-ng (installed by the test set-up where allowed), as a
    22050 Hz WAV of about 8 s."""
    import subprocess

    from tests.system_packages import require_program

    espeak = require_program("espeak-ng", package="espeak-ng")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    text = (
        "Good evening. Here is the news. The city council met today to discuss the new "
        "library, which will open next spring with longer hours and a larger reading room."
    )
    subprocess.run([espeak, "-w", str(path), text], check=True, capture_output=True, timeout=60)
    return path


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
