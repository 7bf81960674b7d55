from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner, Result

from cli.main import cli
from db.engine import dispose_engines

Invoke = Callable[..., Result]


@pytest.fixture
def genrectl(tmp_path: Path) -> Iterator[Invoke]:
    """Run ``genrectl ARGS`` in-process against a fresh embedded home; fails on a crash."""
    env = {"GENRECTL_HOME": str(tmp_path / "home"), "GENRECTL_WORKERS": "2"}
    runner = CliRunner(env=env)

    def invoke(*args: str, expect: int = 0) -> Result:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == expect, result.output
        return result

    yield invoke
    dispose_engines()


def json_of(result: Result) -> Any:
    return json.loads(result.stdout)


def write_tone(path: Path, *, seconds: float, freq: float = 440.0, sr: int = 22050) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32), sr)
    return path
