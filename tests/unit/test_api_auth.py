"""Bearer tokens: kept as SHA-256 only, compared in constant time, roles enforced per route."""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest

from reconciler.api import ApiSettings, TokenSpec, create_api
from reconciler.api.auth import Principal, TokenRegistry
from reconciler.api.settings import Role
from reconciler.config import ConfigError
from reconciler.domain.rules import Rules
from reconciler.store import open_store

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi import FastAPI

VIEWER_TOKEN = "viewer-token-0123456789"  # noqa: S105 - test tokens
OPERATOR_TOKEN = "operator-token-0123456789"  # noqa: S105
TOKENS = [
    TokenSpec.model_validate({"name": "vera", "role": "viewer", "token": VIEWER_TOKEN}),
    TokenSpec.model_validate({"name": "siti", "role": "operator", "token": OPERATOR_TOKEN}),
]


@pytest.fixture
def app() -> Iterator[FastAPI]:
    """The API over an empty in-memory log, with a viewer and an operator token."""
    store = open_store("sqlite://:memory:")
    try:
        yield create_api(ApiSettings(tokens=TOKENS), store, Rules())
    finally:
        store.close()


def call(app: FastAPI, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    """One request to the app in-process (no socket)."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.request(method, path, headers=headers, json={"note": "n"})

    return anyio.run(send)


def test_the_registry_keeps_hashes_and_knows_each_token() -> None:
    """Each token identifies its principal; an unknown one nobody; no clear text is kept."""
    registry = TokenRegistry(TOKENS)
    assert registry.identify(VIEWER_TOKEN) == Principal("vera", Role.VIEWER)
    assert registry.identify(OPERATOR_TOKEN) == Principal("siti", Role.OPERATOR)
    assert registry.identify(VIEWER_TOKEN + "x") is None
    assert len(registry) == 2
    kept = repr(registry._entries)  # noqa: SLF001 - what the registry holds in memory
    assert VIEWER_TOKEN not in kept
    assert hashlib.sha256(VIEWER_TOKEN.encode()).digest() in dict(registry._entries)  # noqa: SLF001


def test_every_known_hash_is_compared_whatever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """identify() runs compare_digest against every entry, matched first, last or never."""
    calls: list[int] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return compare(a, b)

    monkeypatch.setattr("reconciler.api.auth.hmac.compare_digest", counting)
    registry = TokenRegistry(TOKENS)
    for token in (VIEWER_TOKEN, OPERATOR_TOKEN, "unknown-token-0123456789"):
        calls.clear()
        registry.identify(token)
        assert len(calls) == len(TOKENS)


def test_the_same_token_twice_is_a_config_error() -> None:
    """Two entries with one token would make the caller ambiguous: refused, naming both."""
    twin = TokenSpec.model_validate({"name": "budi", "role": "operator", "token": VIEWER_TOKEN})
    with pytest.raises(ConfigError, match="one token is given twice, for vera and budi"):
        TokenRegistry([*TOKENS, twin])


def test_no_token_is_401_with_a_bearer_challenge(app: FastAPI) -> None:
    """Without Authorization a protected route answers 401 and `WWW-Authenticate: Bearer`."""
    response = call(app, "GET", "/api/v1/cases/open", {})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="reconciler"'
    assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize(
    "authorization",
    ["Bearer unknown-token-0123456789", "Basic dmVyYTpzZWNyZXQ=", f"Bearer{VIEWER_TOKEN}"],
)
def test_a_wrong_token_or_scheme_is_401(app: FastAPI, authorization: str) -> None:
    """An unknown token is `invalid_token`; another scheme counts as no token at all."""
    response = call(app, "GET", "/api/v1/cases/open", {"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="reconciler"')
    assert response.json()["error"]["code"] == "unauthenticated"


def test_the_scheme_is_case_insensitive(app: FastAPI) -> None:
    """`bearer` in lower case is a bearer token too (RFC 6750 follows RFC 7235)."""
    response = call(app, "GET", "/api/v1/cases/open", {"Authorization": f"bearer {VIEWER_TOKEN}"})
    assert response.status_code == 200


def test_a_viewer_may_read_but_not_act(app: FastAPI) -> None:
    """The viewer token lists open cases, and is refused 403 on an operator action."""
    headers = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    assert call(app, "GET", "/api/v1/cases/open", headers).status_code == 200
    refused = call(
        app, "POST", "/api/v1/incidents/P3/AMOUNT_MISMATCH/REFUND_FLOOD/approve", headers
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "code": "forbidden",
        "message": "this needs the operator role; the token of 'vera' is viewer",
        "details": None,
    }


def test_an_operator_may_read_and_act(app: FastAPI) -> None:
    """The operator token reads, and reaches the action (404 here: the log is empty)."""
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    assert call(app, "GET", "/api/v1/cases/open", headers).status_code == 200
    acted = call(app, "POST", "/api/v1/incidents/P3/AMOUNT_MISMATCH/REFUND_FLOOD/approve", headers)
    assert acted.status_code == 404
    assert acted.json()["error"]["code"] == "escalation_not_found"


def test_health_needs_no_token(app: FastAPI) -> None:
    """Health answers without credentials, and says the store answers."""
    response = call(app, "GET", "/api/v1/health", {})
    assert (response.status_code, response.json()) == (200, {"status": "ok", "store": "ok"})
