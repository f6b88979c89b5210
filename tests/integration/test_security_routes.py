"""Every route the app serves, found by walking its router (not the OpenAPI spec), is guarded.

The OpenAPI spec leaves out routes with `include_in_schema=False`, so a test driven by
it would miss a hidden route added without a token check. Here the routes come from
`fastapi.routing.iter_route_contexts(app.routes)`; only the routes in `PUBLIC` (public
by design: liveness, the spec, the dashboard's page and files, which hold no data) may
answer without a token. Any other route must refuse no token and an unknown token
(401), refuse a viewer if it is an operator route (403), and let its role in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import anyio
import httpx
import pytest
from fastapi import APIRouter
from fastapi.routing import RouteContext, iter_route_contexts
from starlette.convertors import PathConvertor

from reconciler.api import ApiSettings, create_api
from reconciler.api.auth import current_principal
from reconciler.api.context import PREFIX
from reconciler.domain.rules import Rules
from reconciler.store import open_store
from tests.integration.test_api_actions import AS_OPERATOR, AS_VIEWER, RULES, TOKENS, seeded_log

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi import FastAPI
    from fastapi.dependencies.models import Dependant

    from reconciler.store import LogStore

# (method, path template) answered without a token, on purpose.
PUBLIC = {
    ("GET", "/api/v1/health"),  # probes of load balancers and orchestrators
    ("GET", "/openapi.json"),
    ("HEAD", "/openapi.json"),
    ("GET", "/"),  # redirects to the page
    ("GET", "/dashboard"),  # the page asks the person for a token
    ("GET", "/dashboard/assets/{name}"),
}
SAMPLE_BODIES = {
    "ResolveRequest": {"outcome": "NO_MONEY_AT_STAKE", "note": "n"},
    "IncidentRequest": {"note": "n"},
}
SAMPLE_SEGMENTS = {"name": "dashboard.js", "order_id": "A1"}
UNKNOWN_TOKEN = {"Authorization": "Bearer unknown-token-0123456789"}


def routes_of(app: FastAPI) -> list[RouteContext]:
    """Every route the app serves, through its included routers."""
    return list(iter_route_contexts(app.routes))


def endpoints(app: FastAPI) -> list[tuple[str, str, RouteContext]]:
    """(method, path template, route) for every method of every route."""
    return [
        (method, str(route.path_format), route)
        for route in routes_of(app)
        for method in sorted(route.methods or ())
    ]


# Enumerated once from an app that is not served (it needs no store to list its routes).
UNSERVED = create_api(ApiSettings.model_construct(), cast("LogStore", None), Rules())
ENDPOINTS = [(method, path) for method, path, _ in endpoints(UNSERVED)]


def guarded(dependant: Dependant) -> bool:
    """Whether the bearer-token check is among the dependencies, however deep."""
    return any(d.call is current_principal or guarded(d) for d in dependant.dependencies)


def request_for(route: RouteContext, method: str) -> dict[str, Any]:
    """A well-formed request to the route: a sample per path parameter, a sample body."""
    url = str(route.path_format)
    for name, convertor in route.param_convertors.items():
        default = "X/Y" if isinstance(convertor, PathConvertor) else "X"
        url = url.replace("{" + name + "}", SAMPLE_SEGMENTS.get(name, default))
    request: dict[str, Any] = {"method": method, "url": url}
    body = getattr(route, "body_field", None)
    if body is not None:
        request["json"] = SAMPLE_BODIES[body.field_info.annotation.__name__]
    return request


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The API over the seeded log (three failed refunds and a refund flood)."""
    store = open_store(seeded_log(tmp_path_factory.mktemp("routes")))
    try:
        yield create_api(ApiSettings(tokens=TOKENS), store, RULES)
    finally:
        store.close()


def answers(app: FastAPI, request: dict[str, Any]) -> dict[str, httpx.Response]:
    """The route's answer with no token, an unknown one, the viewer's and the operator's."""
    callers = {"anonymous": {}, "unknown": UNKNOWN_TOKEN, "viewer": AS_VIEWER}
    callers["operator"] = AS_OPERATOR

    async def send() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return {
                who: await client.request(**request, headers=headers)
                for who, headers in callers.items()
            }

    return anyio.run(send)


def test_the_enumeration_sees_hidden_routes_and_only_http_routes() -> None:
    """The walk finds the routes the spec hides, and every route is a plain HTTP route."""
    assert ("GET", "/dashboard/assets/{name}") in ENDPOINTS  # include_in_schema=False
    assert ("POST", "/api/v1/escalations/{escalation_id}/resolve") in ENDPOINTS
    for route in routes_of(UNSERVED):
        assert route.methods, f"{route.path_format}: not an HTTP route (a mount, a websocket?)"
    assert set(ENDPOINTS) >= PUBLIC, "a public route is gone: update PUBLIC"


def test_every_route_but_the_public_ones_checks_the_token() -> None:
    """Each non-public route depends on the bearer check and declares the role it needs."""
    for method, path, route in endpoints(UNSERVED):
        if (method, path) in PUBLIC:
            continue
        assert route.dependant is not None
        assert guarded(route.dependant), f"{method} {path} does not check the token"
        assert (route.openapi_extra or {}).get("x-required-role") in {"viewer", "operator"}


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_every_route_answers_each_caller_as_its_role_says(
    app: FastAPI, method: str, path: str
) -> None:
    """No or unknown token: 401; viewer: 403 on operator routes; allowed roles: let in."""
    (route,) = [r for m, p, r in endpoints(app) if (m, p) == (method, path)]
    got = answers(app, request_for(route, method))
    if (method, path) in PUBLIC:
        assert {got[who].status_code for who in got} <= {200, 303}
        return
    for who in ("anonymous", "unknown"):
        assert got[who].status_code == 401, f"{who} let into {method} {path}"
        assert got[who].headers["WWW-Authenticate"].startswith('Bearer realm="reconciler"')
    role = (route.openapi_extra or {}).get("x-required-role")
    if role == "operator":
        assert got["viewer"].status_code == 403
        assert got["viewer"].json()["error"]["code"] == "forbidden"
    else:
        assert got["viewer"].status_code not in {401, 403}
        assert got["viewer"].status_code < 500
    assert got["operator"].status_code not in {401, 403}
    assert got["operator"].status_code < 500


def test_a_hidden_route_without_a_token_check_would_be_caught() -> None:
    """The checks above flag a route added with no token check, even one the spec hides."""
    extra = APIRouter(prefix=PREFIX, include_in_schema=False)

    @extra.get("/leak")
    def leak() -> dict[str, str]:
        return {"customer_ref": "anyone may read this"}

    app = create_api(
        ApiSettings.model_construct(), cast("LogStore", None), Rules(), routers=[extra]
    )
    found = {(method, path): route for method, path, route in endpoints(app)}
    route = found["GET", "/api/v1/leak"]
    assert route.dependant is not None
    assert not guarded(route.dependant)
    assert ("GET", "/api/v1/leak") not in PUBLIC


def test_no_token_is_refused_before_the_read_models_catch_up(app: FastAPI) -> None:
    """An anonymous call to a finance route is refused before the read models are set up."""
    fresh = create_api(ApiSettings(tokens=TOKENS), app.state.api_context.store, RULES)

    async def anonymous() -> httpx.Response:
        transport = httpx.ASGITransport(app=fresh)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get("/api/v1/summary", headers=UNKNOWN_TOKEN)

    assert anyio.run(anonymous).status_code == 401
    assert getattr(fresh.state, "finance_views", None) is None  # no catch-up was run
