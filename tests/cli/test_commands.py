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


def test_no_command_imports_torch_and_help_imports_no_command() -> None:
    code = (
        "import sys, click, cli.main\n"
        "from cli.main import cli\n"
        "cli.main(['--help'], standalone_mode=False)\n"
        "print('help:', sorted(m for m in ('sqlalchemy', 'db.models') if m in sys.modules))\n"
        "ctx = click.Context(cli)\n"
        "assert all(cli.get_command(ctx, name) for name in cli.list_commands(ctx))\n"
        "print('all:', sorted(m for m in ('torch', 'h5py', 'librosa') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "help: []" in result.stdout and "all: []" in result.stdout


def test_the_listed_summaries_are_the_commands_own() -> None:
    """``genrectl --help`` lists each command from cli.main.COMMANDS without importing it:
    the summary there must read as the command's own help does, at any terminal width."""
    import click

    from cli.main import COMMANDS, cli

    ctx = click.Context(cli)
    for name, (_target, summary) in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
        for width in (30, 45, 80, 400):
            stand_in = click.Command(name, help=summary).get_short_help_str(width)
            assert stand_in == command.get_short_help_str(width), name
