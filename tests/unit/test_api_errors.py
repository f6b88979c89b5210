"""Every error is JSON of one shape; the access log has one line per request and no token."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

import anyio
import httpx
import pytest
from eventsourcing.persistence import OperationalError
from fastapi import APIRouter
from structlog.testing import capture_logs

from reconciler.api import ApiSettings, TokenSpec, ViewerAccess, create_api
from reconciler.api.access import INTERNAL_ERROR_MESSAGE
from reconciler.api.context import PREFIX
from reconciler.domain.rules import Rules
from reconciler.store import open_store

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi import FastAPI

    from reconciler.store import LogStore

OPERATOR_TOKEN = "operator-token-0123456789"  # noqa: S105 - a test token
AS_OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
RESOLVE = "/api/v1/escalations/P2/REFUND_FAILED/resolve"

crashing = APIRouter(prefix=PREFIX)


@crashing.get("/crash")
def crash(_who: ViewerAccess) -> dict[str, str]:
    """A route that fails the way a bug would."""
    msg = "secret internals: password=hunter2"
    raise RuntimeError(msg)


@pytest.fixture
def app() -> Iterator[FastAPI]:
    """The API over an empty in-memory log, an operator token, and a route that crashes."""
    store = open_store("sqlite://:memory:")
    siti = TokenSpec.model_validate({"name": "siti", "role": "operator", "token": OPERATOR_TOKEN})
    try:
        yield create_api(ApiSettings(tokens=[siti]), store, Rules(), routers=[crashing])
    finally:
        store.close()


def call(app: FastAPI, method: str, path: str, **options: Any) -> httpx.Response:
    """One request to the app in-process (no socket)."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.request(method, path, **options)

    return anyio.run(send)


@pytest.mark.parametrize(
    ("method", "path", "options", "status", "code"),
    [
        ("GET", "/api/v1/nothing-here", {}, 404, "not_found"),
        ("DELETE", "/api/v1/cases/open", {}, 405, "method_not_allowed"),
        ("GET", "/api/v1/cases/open?limit=0", {"headers": AS_OPERATOR}, 422, "validation_failed"),
        (
            "GET",
            "/api/v1/cases/open?reason=NOPE",
            {"headers": AS_OPERATOR},
            422,
            "validation_failed",
        ),
        ("GET", "/api/v1/cases/open?cursor=bm9wZQ", {"headers": AS_OPERATOR}, 400, "invalid_query"),
        (
            "POST",
            RESOLVE,
            {"headers": AS_OPERATOR, "content": b"{not json"},
            422,
            "validation_failed",
        ),
        (
            "POST",
            RESOLVE,
            {"headers": AS_OPERATOR, "json": {"note": "n"}},
            422,
            "validation_failed",
        ),
    ],
)
def test_errors_are_json_with_a_code_and_a_message(  # noqa: PLR0913, PLR0917 - one per table column
    app: FastAPI, method: str, path: str, options: dict[str, Any], status: int, code: str
) -> None:
    """404, 405, 422 and 400 all answer `{"error": {"code", "message", "details"}}`."""
    response = call(app, method, path, **options)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_method_not_allowed_says_what_is(app: FastAPI) -> None:
    """A 405 carries `Allow`, and its message lists the allowed methods."""
    response = call(app, "PUT", "/api/v1/health")
    assert response.headers["Allow"] == "GET"
    assert response.json()["error"]["message"] == "PUT is not allowed here; allowed: GET"


def test_validation_errors_list_each_problem_without_the_input(app: FastAPI) -> None:
    """A 422 names each field at fault and the rule; it does not echo what was sent."""
    long_note = "z" * 2001
    body = {"outcome": "LOST", "note": long_note, "operator": "mallory"}
    response = call(app, "POST", RESOLVE, headers=AS_OPERATOR, json=body)
    assert response.status_code == 422
    problems = response.json()["error"]["details"]
    assert {tuple(p["location"]) for p in problems} == {
        ("body", "outcome"),
        ("body", "note"),
        ("body", "operator"),
    }
    assert long_note not in response.text
    assert "mallory" not in response.text


def test_refunded_outside_without_a_reference_is_refused(app: FastAPI) -> None:
    """The body rule the event contract has is checked before anything is looked up."""
    body = {"outcome": "REFUNDED_OUTSIDE", "note": "paid by hand"}
    response = call(app, "POST", RESOLVE, headers=AS_OPERATOR, json=body)
    assert response.status_code == 422
    assert response.json()["error"]["message"] == (
        "body: outcome REFUNDED_OUTSIDE needs the transfer's reference"
    )


def test_a_crash_is_logged_and_answered_without_internals(app: FastAPI) -> None:
    """An unhandled exception is a generic 500; the traceback goes to the log only."""
    with capture_logs() as logs:
        response = call(app, "GET", "/api/v1/crash", headers=AS_OPERATOR)
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": INTERNAL_ERROR_MESSAGE, "details": None}
    }
    assert "hunter2" not in response.text
    failed = next(entry for entry in logs if entry["event"] == "api_request_failed")
    assert (failed["log_level"], failed["path"], failed["exc_info"]) == (
        "error",
        "/api/v1/crash",
        True,
    )
    access = next(entry for entry in logs if entry["event"] == "api_request")
    assert access["status"] == 500


def test_the_access_log_names_route_status_time_and_role(app: FastAPI) -> None:
    """One `api_request` per request: method, path template, status, ms, role and name."""
    with capture_logs() as logs:
        call(
            app, "POST", RESOLVE, headers=AS_OPERATOR, json={"outcome": "RETRY_REFUND", "note": "n"}
        )
        call(app, "GET", "/api/v1/nothing-here")
    resolved, unknown = [entry for entry in logs if entry["event"] == "api_request"]
    assert isinstance(resolved.pop("ms"), float)
    assert resolved == {
        "event": "api_request",
        "log_level": "info",
        "method": "POST",
        "path": "/api/v1/escalations/{escalation_id}/resolve",
        "status": 404,
        "role": "operator",
        "who": "siti",
    }
    assert (unknown["path"], unknown["status"], unknown["role"]) == (None, 404, None)


def test_the_log_never_holds_a_token(app: FastAPI) -> None:
    """Neither a valid nor a refused token appears in any logged value."""
    wrong = "wrong-token-0123456789"
    with capture_logs() as logs:
        call(app, "GET", "/api/v1/cases/open", headers=AS_OPERATOR)
        call(app, "GET", "/api/v1/cases/open", headers={"Authorization": f"Bearer {wrong}"})
        call(app, "GET", "/api/v1/crash", headers=AS_OPERATOR)
    logged = json.dumps(logs, default=str)
    assert len([e for e in logs if e["event"] == "api_request"]) == 3
    assert OPERATOR_TOKEN not in logged
    assert wrong not in logged


def test_a_router_outside_the_prefix_is_refused() -> None:
    """Plugged-in routers must live under /api/v1, so the access log names whole paths."""
    stray = APIRouter()

    @stray.get("/elsewhere")
    def elsewhere() -> None:
        """Nothing."""

    store = open_store("sqlite://:memory:")
    try:
        with pytest.raises(ValueError, match="routes outside /api/v1: /elsewhere"):
            create_api(ApiSettings(), store, Rules(), routers=[stray])
    finally:
        store.close()


class _DownStore:
    """A log store whose database does not answer."""

    def last_position(self) -> int:
        """Fail as a dropped connection does."""
        msg = "connection refused"
        raise OperationalError(msg)


def test_health_says_degraded_when_the_store_does_not_answer() -> None:
    """Health still answers 200 (the process lives) and says the store is unavailable."""
    app = create_api(ApiSettings(), cast("LogStore", _DownStore()), Rules())
    with capture_logs() as logs:
        response = call(app, "GET", "/api/v1/health")
    assert (response.status_code, response.json()) == (
        200,
        {"status": "degraded", "store": "unavailable"},
    )
    assert {
        "event": "api_store_unavailable",
        "error": "OperationalError",
        "log_level": "warning",
    } in logs
