"""The API's settings: tokens hashed as they are read, errors that never quote them."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import pytest

from reconciler.api.settings import ApiSettings, Role, TokenSpec, load_api_settings
from reconciler.config import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

SECRET = "viewer-token-0123456789"  # noqa: S105 - a test token


def test_a_clear_token_is_kept_only_as_its_sha256(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token from RECONCILER_API_TOKENS is hashed on reading; the settings hold no clear text."""
    tokens = [{"name": "vera", "role": "viewer", "token": SECRET}]
    monkeypatch.setenv("RECONCILER_API_TOKENS", json.dumps(tokens))
    settings = load_api_settings()
    (spec,) = settings.all_tokens()
    assert spec == TokenSpec(
        name="vera", role=Role.VIEWER, sha256=hashlib.sha256(SECRET.encode()).hexdigest()
    )
    assert SECRET not in settings.model_dump_json()


def test_the_defaults_listen_on_loopback_with_no_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without variables the API would listen on 127.0.0.1:8080 and let no one in."""
    for name in ("TOKENS", "TOKENS_FILE", "HOST", "PORT"):
        monkeypatch.delenv(f"RECONCILER_API_{name}", raising=False)
    settings = load_api_settings()
    assert (settings.host, settings.port, settings.all_tokens()) == ("127.0.0.1", 8080, [])


def test_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command-line value wins over RECONCILER_API_PORT; None leaves the variable's."""
    monkeypatch.setenv("RECONCILER_API_PORT", "9000")
    monkeypatch.setenv("RECONCILER_API_HOST", "0.0.0.0")  # noqa: S104 - a value, not a bind
    assert load_api_settings(port=9100, host=None).port == 9100
    assert load_api_settings(port=None).host == "0.0.0.0"  # noqa: S104


def test_a_tokens_file_in_toml_holds_hashes(tmp_path: Path) -> None:
    """`[[tokens]]` tables with sha256 are read as they are: the file need not hold secrets."""
    digest = hashlib.sha256(b"operator-token-0123456789").hexdigest()
    path = tmp_path / "tokens.toml"
    path.write_text(f'[[tokens]]\nname = "siti"\nrole = "operator"\nsha256 = "{digest}"\n')
    settings = ApiSettings(tokens_file=path)
    assert settings.all_tokens() == [TokenSpec(name="siti", role=Role.OPERATOR, sha256=digest)]


def test_a_tokens_file_in_json_adds_to_the_variable(tmp_path: Path) -> None:
    """A JSON file's tokens come after those of RECONCILER_API_TOKENS."""
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([{"name": "siti", "role": "operator", "token": "o" * 20}]))
    vera = TokenSpec.model_validate({"name": "vera", "role": "viewer", "token": SECRET})
    settings = ApiSettings(tokens=[vera], tokens_file=path)
    assert [(spec.name, spec.role) for spec in settings.all_tokens()] == [
        ("vera", Role.VIEWER),
        ("siti", Role.OPERATOR),
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "vera", "role": "viewer", "token": "short-secret"}, "at least 16 characters"),
        ({"name": "vera", "role": "viewer", "token": "with a space 0123456"}, "without spaces"),
        ({"name": "vera", "role": "viewer", "token": SECRET, "sha256": "0" * 64}, "not both"),
        ({"name": "vera", "role": "viewer", "sha256": "ABC"}, "64 lowercase hex"),
        ({"name": "vera", "role": "admin", "token": SECRET}, "'viewer' or 'operator'"),
        ({"name": "", "role": "viewer", "token": SECRET}, "at least 1 character"),
    ],
)
def test_an_unusable_token_is_refused_without_quoting_it(
    tmp_path: Path, entry: dict[str, str], message: str
) -> None:
    """A bad entry in a tokens file names the file, the entry and the rule, never the token."""
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [entry]}))
    with pytest.raises(ConfigError, match=message) as raised:
        ApiSettings(tokens_file=path).all_tokens()
    assert str(path) in str(raised.value)
    secret = entry.get("token")
    assert secret is None or secret not in str(raised.value)


def test_a_bad_variable_is_a_config_error_without_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RECONCILER_API_TOKENS that is not JSON, or holds a short token, is a ConfigError."""
    monkeypatch.setenv("RECONCILER_API_TOKENS", '[{"name": "vera", "role": "viewer"')
    with pytest.raises(ConfigError, match="tokens"):
        load_api_settings()
    monkeypatch.setenv(
        "RECONCILER_API_TOKENS", json.dumps([{"name": "v", "role": "viewer", "token": "abc"}])
    )
    with pytest.raises(ConfigError, match=r"setting\.tokens\.0: token must be") as raised:
        load_api_settings()
    assert "abc" not in str(raised.value)


def test_an_unreadable_tokens_file_names_it(tmp_path: Path) -> None:
    """A missing or malformed tokens file is a ConfigError naming the file."""
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"absent\.toml: cannot read tokens"):
        ApiSettings(tokens_file=missing).all_tokens()
    flat = tmp_path / "flat.toml"
    flat.write_text('name = "siti"\n')
    with pytest.raises(ConfigError, match="expected a list of tokens"):
        ApiSettings(tokens_file=flat).all_tokens()


def test_the_operator_role_grants_both_roles_and_the_viewer_only_its_own() -> None:
    """Roles are ordered: operator may view; a viewer may not act."""
    assert Role.OPERATOR.grants(Role.VIEWER)
    assert Role.OPERATOR.grants(Role.OPERATOR)
    assert Role.VIEWER.grants(Role.VIEWER)
    assert not Role.VIEWER.grants(Role.OPERATOR)
