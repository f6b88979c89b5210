"""The HTTP API: finance read models and operator actions, with bearer tokens and two roles.

    settings = load_api_settings()                 # RECONCILER_API_* (see `settings`)
    app = create_api(settings, store, rules)       # `app`: routes under /api/v1
    serve(app, settings.host, settings.port)       # `server`; or `reconciler api` (`cli`)

A request is authenticated by its bearer token (`auth`: SHA-256 hashes only, compared in
constant time) as a `viewer`, who reads, or an `operator`, who also acts. The routes:
`health` (no token), `cases` (open escalations, viewer) and `actions` (resolve,
approve, reject; operator). They get the log and the rules from `context`, take and give
the JSON of `models`, and fail with the one error shape of `errors`. `access` logs one
line per request and turns a crash into a JSON 500.
"""

from reconciler.api.app import create_api
from reconciler.api.auth import OperatorAccess, Principal, ViewerAccess
from reconciler.api.context import Context
from reconciler.api.errors import ApiError
from reconciler.api.server import BackgroundServer, serve
from reconciler.api.settings import ApiSettings, Role, TokenSpec, load_api_settings

__all__ = [
    "ApiError",
    "ApiSettings",
    "BackgroundServer",
    "Context",
    "OperatorAccess",
    "Principal",
    "Role",
    "TokenSpec",
    "ViewerAccess",
    "create_api",
    "load_api_settings",
    "serve",
]
