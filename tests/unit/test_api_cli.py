"""`reconciler api` as a command of the main command line, the way cli.py wires it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from typer.testing import CliRunner

from reconciler.api.cli import api

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

main = typer.Typer(no_args_is_help=True)
main.command("api")(api)


@main.command("other")
def other() -> None:
    """A second command, so that `api` is a subcommand as in the real command line."""


def test_the_command_wires_as_a_subcommand() -> None:
    """`app.command("api")(api)` gives `reconciler api` with its options and variables."""
    result = CliRunner().invoke(main, ["api", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in ("--store", "--config", "--kafka-bootstrap", "--host", "--port", "--tokens-file"):
        assert option in result.output
    assert "RECONCILER_STORE_URL" in result.output


def test_an_unusable_setting_exits_2_before_opening_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad tokens file stops the command with status 2 and the file's name; no log is made."""
    monkeypatch.delenv("RECONCILER_API_TOKENS", raising=False)
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        "[[tokens]]\nname = 'siti'\nrole = 'root'\ntoken = 'operator-token-0123456789'\n"
    )
    log = tmp_path / "log.sqlite"
    store = f"sqlite:///{log}"
    result = CliRunner().invoke(main, ["api", "--store", store, "--tokens-file", str(tokens)])
    assert result.exit_code == 2
    assert f"{tokens}: tokens.0.role: Input should be 'viewer' or 'operator'" in result.output
    assert "operator-token-0123456789" not in result.output
    assert not log.exists()
