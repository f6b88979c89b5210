"""The finance dashboard: one page at `/dashboard` over the read endpoints (`finance`).

    app.include_router(dashboard.router)     # after create_api(..., routers=[finance.router])

The page (`static/dashboard.html`, `.js`, `.css`) is plain HTML and script, with no
build step and nothing from the internet: its charts are drawn by plotly.js, served at
`/dashboard/assets/plotly.min.js` straight from the file the installed `plotly` package
ships (it is not copied into this repository). The page asks for a token once, keeps it
in the tab's sessionStorage, and calls `/api/v1/...` with it as a bearer token, so it
sees what that token's role may see. It writes every value from the data as text
(never as HTML), and the Content-Security-Policy sent with it lets only this server's
own scripts run.

The routes are not part of the API (no token, not in the OpenAPI spec): they serve the
same files to anyone, and the data only to a valid token. `/` redirects to the page.
"""

from __future__ import annotations

import importlib.util
from http import HTTPStatus
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from reconciler.api.errors import ApiError

PAGE_PATH = "/dashboard"
STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    # plotly.js sets style attributes and adds its own style sheet as it draws.
    "style-src 'self' 'unsafe-inline'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
_OWN_ASSETS = frozenset({"dashboard.js", "dashboard.css"})
PLOTLY_ASSET = "plotly.min.js"

router = APIRouter(include_in_schema=False)


def plotly_js() -> Path:
    """The plotly.min.js bundled with the installed `plotly` package (found, not imported)."""
    spec = importlib.util.find_spec("plotly")
    locations = [] if spec is None else list(spec.submodule_search_locations or [])
    for location in locations:
        candidate = Path(location) / "package_data" / PLOTLY_ASSET
        if candidate.is_file():
            return candidate
    msg = "the plotly package is not installed: the dashboard draws its charts with it"
    raise FileNotFoundError(msg)


@router.get("/")
def root() -> RedirectResponse:
    """The service's front door is the dashboard."""
    return RedirectResponse(PAGE_PATH, status_code=HTTPStatus.SEE_OTHER)


@router.get(PAGE_PATH)
def page() -> FileResponse:
    """The dashboard page itself."""
    return _file(STATIC / "dashboard.html", "no-cache")


@router.get(PAGE_PATH + "/assets/{name}")
def asset(name: str) -> FileResponse:
    """The page's script and style sheet, and plotly.js; 404 for any other name."""
    if name == PLOTLY_ASSET:
        return _file(plotly_js(), "public, max-age=86400")
    if name not in _OWN_ASSETS:
        raise ApiError(HTTPStatus.NOT_FOUND, "not_found", f"no dashboard asset {name[:80]!r}")
    return _file(STATIC / name, "no-cache")


def _file(path: Path, cache: str) -> FileResponse:
    headers = {**_PAGE_HEADERS, "Cache-Control": cache}
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=headers)
