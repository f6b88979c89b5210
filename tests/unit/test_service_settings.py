"""Service settings: defaults, a TOML file, the environment over it, clear errors."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from reconciler.config import ConfigError
from reconciler.service.settings import ServiceSettings, load_settings

if TYPE_CHECKING:
    from pathlib import Path


def test_defaults_need_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a file or variables the service has working defaults."""
    monkeypatch.delenv("RECONCILER_GROUP_ID", raising=False)
    settings = load_settings()
    assert settings.group_id == "reconciler"
    assert settings.input_topics == ["reconciler.events"]


def test_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A [service] table sets values; RECONCILER_* variables override it."""
    path = tmp_path / "service.toml"
    path.write_text(
        '[service]\ngroup_id = "from-file"\nbatch_max_records = 77\ninput_topics = ["a", "b"]\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("RECONCILER_GROUP_ID", "from-env")
    settings = load_settings(path)
    assert settings.group_id == "from-env"
    assert settings.batch_max_records == 77
    assert settings.input_topics == ["a", "b"]


def test_list_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list setting is a JSON list in the environment."""
    monkeypatch.setenv("RECONCILER_INPUT_TOPICS", '["x", "y"]')
    assert load_settings().input_topics == ["x", "y"]


def test_unknown_setting_names_the_file(tmp_path: Path) -> None:
    """A misspelt key in the file is refused, naming the file and the key."""
    path = tmp_path / "service.toml"
    path.write_text('[service]\ngroup_idd = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"service\.toml.*group_idd"):
        load_settings(path)


def test_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value of the wrong kind is refused, naming the setting."""
    monkeypatch.setenv("RECONCILER_BATCH_MAX_RECORDS", "many")
    with pytest.raises(ConfigError, match="batch_max_records"):
        load_settings()


def test_serve_help_lists_every_setting() -> None:
    """`reconciler serve --help` names every setting's environment variable."""
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    for name in ServiceSettings.model_fields:
        assert f"RECONCILER_{name.upper()}" in result.stdout
