from __future__ import annotations

from pathlib import Path

import pytest

from genrectl.errors import ConfigError
from genrectl.settings import Settings, mask_url, parse_path_map


def test_embedded_defaults_live_under_the_xdg_data_dir(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOME": str(tmp_path)})
    assert settings.home == tmp_path / ".local/share/genrectl"
    assert settings.database_url == f"sqlite:///{settings.home / 'genrectl.db'}"
    assert settings.shard_dir == settings.home / "data" / "shards"
    assert settings.embedded


def test_xdg_data_home_and_genrectl_home_are_respected(tmp_path: Path) -> None:
    assert Settings.from_env({"XDG_DATA_HOME": str(tmp_path)}).home == tmp_path / "genrectl"
    assert Settings.from_env({"GENRECTL_HOME": str(tmp_path / "g")}).home == tmp_path / "g"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GENRECTL_WORKERS", "zero", "GENRECTL_WORKERS='zero' must be an integer"),
        ("GENRECTL_CHUNK_SIZE", "0", "GENRECTL_CHUNK_SIZE=0 must be at least 1"),
        ("GENRECTL_UNKNOWN_THRESHOLD", "1.5", "must be between 0.0 and 1.0"),
        ("GENRECTL_DEVICE", "tpu", "GENRECTL_DEVICE='tpu' must be auto, cpu, cuda or cuda:N"),
        ("GENRECTL_PATH_MAP", "/a", "entry '/a' must look like /from=/to"),
    ],
)
def test_bad_values_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        Settings.from_env({"HOME": "/tmp", name: value})


def test_path_map_translates_library_paths_for_workers() -> None:
    settings = Settings.from_env(
        {"HOME": "/tmp", "GENRECTL_PATH_MAP": "/home/me/Music=/music;/mnt/nas/=/nas"}
    )
    assert parse_path_map("/a=/b") == (("/a", "/b"),)
    assert settings.map_path("/home/me/Music/x/y.flac") == "/music/x/y.flac"
    assert settings.map_path("/home/me/Musical/y.flac") == "/home/me/Musical/y.flac"
    assert settings.map_path("/mnt/nas/z.mp3") == "/nas/z.mp3"


def test_secrets_are_masked_in_public_settings() -> None:
    settings = Settings.from_env(
        {
            "HOME": "/tmp",
            "GENRECTL_BROKER_URL": "redis://:hunter2@queue:6379/0",
            "GENRECTL_DATABASE_URL": "postgresql+psycopg://genrectl:s3cret@db/genrectl",
        }
    )
    public = settings.public()
    assert "hunter2" not in str(public) and "s3cret" not in str(public)
    assert public["broker_url"] == "redis://:***@queue:6379/0"
    assert public["mode"] == "distributed"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"
