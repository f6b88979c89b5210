"""`reconciler api` as a process over a SQLite log, and every endpoint against both roles.

The command runs as `python -m reconciler.api` (what `reconciler api` runs once wired
into the main command line), with its tokens in RECONCILER_API_TOKENS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest

from reconciler.api import ApiSettings, BackgroundServer, create_api
from reconciler.domain.rules import Rules
from reconciler.store import open_store
from tests.integration.test_api_actions import (
    AS_OPERATOR,
    AS_VIEWER,
    OPERATOR_TOKEN,
    RULES,
    TOKENS,
    VIEWER_TOKEN,
    decisions_in,
    seeded_log,
)
from tests.provider_support import free_port, stop_process

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from reconciler.store import LogStore

START_TIMEOUT_S = 20.0
PUBLIC = {"/api/v1/health"}
SAMPLE_BODIES = {
    "ResolveRequest": {"outcome": "NO_MONEY_AT_STAKE", "note": "n"},
    "IncidentRequest": {"note": "n"},
}
# The spec needs no store and no tokens (nor the environment's): the app is not served.
SPEC = create_api(ApiSettings.model_construct(), cast("LogStore", None), Rules()).openapi()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, item in SPEC["paths"].items()
    for method, operation in item.items()
]


def tokens_env() -> dict[str, str]:
    """The environment of the command: a viewer and an operator token."""
    tokens = [
        {"name": "vera", "role": "viewer", "token": VIEWER_TOKEN},
        {"name": "siti", "role": "operator", "token": OPERATOR_TOKEN},
    ]
    return {**os.environ, "RECONCILER_API_TOKENS": json.dumps(tokens)}


def run_api(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the command to its end (for the ones that refuse to start)."""
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "reconciler.api", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    """`reconciler api` over the seeded log, answering: (its URL, the log's URL, process)."""
    log_url = seeded_log(tmp_path)
    config = tmp_path / "rules.toml"
    config.write_text(f"refund_flood_limit = {RULES.refund_flood_limit}\n", encoding="utf-8")
    port = free_port()
    command = [sys.executable, "-m", "reconciler.api", "--store", log_url, "--port", str(port)]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [*command, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=tokens_env(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(process, url)
        yield url, log_url, process
    finally:
        stop_process(cast("subprocess.Popen[bytes]", process))


def wait_until_healthy(process: subprocess.Popen[str], url: str) -> None:
    """Return once `GET /api/v1/health` answers; fail with the output if the process ends."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"reconciler api exited {process.returncode}: {process.communicate()}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail(f"reconciler api did not answer on {url} within {START_TIMEOUT_S} s")


def test_the_command_serves_reads_and_actions_and_stops_on_sigterm(
    served: tuple[str, str, subprocess.Popen[str]],
) -> None:
    """Over loopback: 401 without a token, the viewer reads, the operator acts; SIGTERM ends it."""
    url, log_url, process = served
    with httpx.Client(base_url=url) as client:
        assert client.get("/api/v1/cases/open").status_code == 401
        listed = client.get("/api/v1/cases/open", headers=AS_VIEWER).json()["items"]
        assert listed[0]["escalation_id"] == "P2/REFUND_FAILED"
        resolved = client.post(
            "/api/v1/escalations/P2/REFUND_FAILED/resolve",
            json={"outcome": "REFUNDED_OUTSIDE", "reference": "BCA-17", "note": "paid"},
            headers=AS_OPERATOR,
        )
        assert resolved.status_code == 200, resolved.text
        assert client.get("/openapi.json").json()["info"]["title"] == "reconciler"
        assert client.get("/docs").status_code == 404
    process.terminate()
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["event"] == "api_request"]
    assert [(a["method"], a["path"], a["status"], a["role"]) for a in access[-4:]] == [
        ("GET", "/api/v1/cases/open", 200, "viewer"),
        ("POST", "/api/v1/escalations/{escalation_id}/resolve", 200, "operator"),
        ("GET", "/openapi.json", 200, None),
        ("GET", None, 404, None),
    ]
    assert lines[-1]["event"] == "api_stopped"
    assert VIEWER_TOKEN not in stderr
    assert OPERATOR_TOKEN not in stderr
    resolved_in_log = decisions_in(log_url, "CaseResolved")
    assert [(d["escalation_id"], d["operator"]) for d in resolved_in_log] == [
        ("P2/REFUND_FAILED", "siti")
    ]


def test_the_command_refuses_to_start_without_tokens(tmp_path: Path) -> None:
    """No tokens configured: exit 2, saying which variables to set."""
    log_url = seeded_log(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_API_")}
    result = run_api("--store", log_url, env=env)
    assert result.returncode == 2
    assert "no tokens: set RECONCILER_API_TOKENS or RECONCILER_API_TOKENS_FILE" in result.stderr


def test_the_command_refuses_a_log_file_that_is_not_there(tmp_path: Path) -> None:
    """A mistyped SQLite path is exit 2, not an empty log served."""
    missing = tmp_path / "nope.sqlite"
    result = run_api("--store", f"sqlite:///{missing}", env=tokens_env())
    assert result.returncode == 2
    assert "no such log file" in result.stderr
    assert not missing.exists()


def test_the_command_refuses_a_short_token_without_printing_it(tmp_path: Path) -> None:
    """A token too short to be safe stops the command; the message does not repeat it."""
    env = {
        **os.environ,
        "RECONCILER_API_TOKENS": '[{"name": "v", "role": "viewer", "token": "hunter2"}]',
    }
    result = run_api("--store", seeded_log(tmp_path), env=env)
    assert result.returncode == 2
    assert "token must be at least 16 characters" in result.stderr
    assert "hunter2" not in result.stderr


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API over a seeded log, served in this process on a loopback port."""
    store = open_store(seeded_log(tmp_path_factory.mktemp("api")))
    try:
        with BackgroundServer(create_api(ApiSettings(tokens=TOKENS), store, RULES)) as server:
            yield server.url
    finally:
        store.close()


def request_for(method: str, path: str, operation: dict[str, Any]) -> dict[str, Any]:
    """A request to the operation: a sample for every path parameter, a valid sample body.

    Escalation and incident ids contain `/` (their routes take it); order ids are `X`.
    """
    url = path
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            sample = "X" if parameter["name"] == "order_id" else "X/Y"
            url = url.replace("{" + parameter["name"] + "}", sample)
    request: dict[str, Any] = {"method": method, "url": url}
    if "requestBody" in operation:
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        request["json"] = SAMPLE_BODIES[schema["$ref"].rsplit("/", 1)[-1]]
    return request


@pytest.mark.parametrize(
    ("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_every_endpoint_checks_its_role(
    api_url: str, method: str, path: str, operation: dict[str, Any]
) -> None:
    """No token: 401; viewer: 403 on operator routes; operator: let in (public: always)."""
    request = request_for(method, path, operation)
    with httpx.Client(base_url=api_url) as client:
        anonymous = client.request(**request)
        as_viewer = client.request(**request, headers=AS_VIEWER)
        as_operator = client.request(**request, headers=AS_OPERATOR)
    if path in PUBLIC:
        assert "security" not in operation
        assert anonymous.status_code == as_viewer.status_code == 200
        return
    assert operation["security"] == [{"bearerToken": []}]
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    role = operation["x-required-role"]
    assert role in {"viewer", "operator"}
    if role == "operator":
        assert as_viewer.status_code == 403
    else:
        assert as_viewer.status_code not in {401, 403}
    assert as_operator.status_code not in {401, 403}
    assert as_operator.status_code < 500
