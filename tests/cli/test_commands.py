from __future__ import annotations

import subprocess
import sys

from tests.cli.conftest import Invoke, json_of


def test_config_prints_effective_settings_with_secrets_masked(genrectl: Invoke) -> None:
    from click.testing import CliRunner

    from cli.main import cli

    env = {"GENRECTL_BROKER_URL": "redis://:pw123@h:6379/0", "GENRECTL_HOME": "/tmp/x"}
    result = CliRunner(env=env).invoke(cli, ["config", "--json"])
    values = json_of(result)
    assert values["broker_url"] == "redis://:***@h:6379/0" and "pw123" not in result.output
    assert values["home"] == "/tmp/x"


def test_bad_setting_is_a_usage_error_naming_it(genrectl: Invoke) -> None:
    from click.testing import CliRunner

    from cli.main import cli

    result = CliRunner(env={"GENRECTL_WORKERS": "-3"}).invoke(cli, ["status"])
    assert result.exit_code == 2
    assert "GENRECTL_WORKERS=-3 must be at least 1" in result.output


def test_db_upgrade_is_idempotent(genrectl: Invoke) -> None:
    assert "upgraded to" in genrectl("db", "upgrade").stdout
    assert "already at" in genrectl("db", "upgrade").stdout


def test_status_on_an_empty_library(genrectl: Invoke) -> None:
    status = json_of(genrectl("status", "--json"))
    assert status["tracks"] == {"total": 0} and status["last_batch"] is None


def test_missing_path_is_a_clear_usage_error(genrectl: Invoke) -> None:
    result = genrectl("ingest", "/no/such/folder", expect=2)
    assert "'/no/such/folder' does not exist" in result.output


def test_help_does_not_import_torch() -> None:
    code = "import sys, cli.main; sys.exit('torch' in sys.modules or 'h5py' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
