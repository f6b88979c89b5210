"""`create_api`: the FastAPI app over a log store, with its routes, errors and access log.

    app = create_api(settings, store, rules)             # nothing is opened or served here
    app = create_api(settings, store, rules, routers=[read_models_router])

Every route lives under `/api/v1` (`PREFIX`). Routers given in `routers` are included
after the built-in ones (health, open cases, operator actions, the finance read
models, and `/metrics`, outside the prefix where Prometheus looks). The dashboard page
(`/dashboard`, its assets, and `/` redirecting there) needs no token: it asks the
person for one and sends it with each API call. They are made with
`APIRouter(prefix=PREFIX)`, so that their routes' templates are whole paths (the
access log names them); they ask for a role with
`reconciler.api.auth.ViewerAccess` or `OperatorAccess`, get the log and rules through
`reconciler.api.context.Context`, raise `reconciler.api.errors.ApiError` for JSON
errors, and say which role they need in `openapi_extra={"x-required-role": ...}` (the
tests check every operation against it). The OpenAPI spec is published at
`/openapi.json`; the interactive docs pages are off, since they load their scripts from
a CDN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from reconciler import __version__
from reconciler.api import actions, cases, dashboard, finance, health, metrics_route
from reconciler.api.access import AccessLog
from reconciler.api.auth import TokenRegistry
from reconciler.api.context import PREFIX, ApiContext
from reconciler.api.errors import install_error_handlers

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fastapi import APIRouter

    from reconciler.api.settings import ApiSettings
    from reconciler.domain.rules import Rules
    from reconciler.store import LogStore

OPENAPI_PATH = "/openapi.json"


def create_api(
    settings: ApiSettings,
    store: LogStore,
    rules: Rules,
    *,
    kafka_bootstrap: str | None = None,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """The API over `store`, whose engine runs `rules`, letting in the settings' tokens.

    `kafka_bootstrap` is where actions on cases held by Kafka partitions are produced;
    without it they are refused. Raises ConfigError if the tokens cannot be used, and
    ValueError for a router with a route outside `PREFIX`.
    """
    for router in routers:
        paths = [str(getattr(route, "path", "")) for route in router.routes]
        outside = [path for path in paths if not path.startswith(PREFIX)]
        if outside:
            msg = f"routes outside {PREFIX}: {', '.join(outside)} (use APIRouter(prefix=PREFIX))"
            raise ValueError(msg)
    app = FastAPI(
        title="reconciler",
        version=__version__,
        description="Finance read models and operator actions over the reconciliation log. "
        "Authenticate with `Authorization: Bearer <token>`; roles: viewer (read) and "
        'operator (read and act). Errors are `{"error": {"code", "message", "details"}}`.',
        openapi_url=OPENAPI_PATH,
        docs_url=None,
        redoc_url=None,
    )
    app.state.api_context = ApiContext(
        store=store,
        rules=rules,
        tokens=TokenRegistry(settings.all_tokens()),
        kafka_bootstrap=kafka_bootstrap,
    )
    install_error_handlers(app)
    app.add_middleware(AccessLog)
    built_in = (health.router, cases.router, actions.router, finance.router)
    for router in (*built_in, metrics_route.router, *routers):
        app.include_router(router)
    app.include_router(dashboard.router)  # the page and its assets: outside PREFIX, no token
    return app
