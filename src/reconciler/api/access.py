"""The access log, and the last line of defence: a crash becomes a JSON 500.

`AccessLog` is plain ASGI middleware around the app's routes. For every HTTP request it
logs one `api_request` event with the method, the route's path template (never the
path as sent: ids in it are data, not a name for the request), the status, the time
taken in milliseconds, and who called with which role. It never sees a token: the
authentication leaves only the principal in the request's state. The line is written
just before the response's last bytes are sent, so it is in the log by the time the
client has the answer.

An exception no handler answered is logged with its traceback (`api_request_failed`)
and answered `500 internal_error` with a message that reveals nothing of the cause.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import structlog

from reconciler.api.errors import error_response

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("reconciler.api")

INTERNAL_ERROR_MESSAGE = "the server failed to answer; the failure is logged"


class AccessLog:
    """ASGI middleware: one key/value log line per request; unhandled errors answered 500."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap `app`."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request; log it just before the last of the response goes out."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 0
        logged = False

        def log_request() -> None:
            nonlocal logged
            logged = True
            principal = state.get("principal")
            log.info(
                "api_request",
                method=scope["method"],
                path=_template(scope, status),
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 2),
                role=None if principal is None else str(principal.role),
                who=None if principal is None else principal.name,
            )

        async def send_and_log(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                log_request()  # before the client has it all: the line is never late
            await send(message)

        try:
            await self.app(scope, receive, send_and_log)
        except Exception:
            log.exception(
                "api_request_failed", method=scope["method"], path=_template(scope, status)
            )
            if status == 0:
                response = error_response(
                    HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", INTERNAL_ERROR_MESSAGE
                )
                await response(scope, receive, send_and_log)
        if not logged:  # the response broke off, or the client went away
            log_request()


def _template(scope: Scope, status: int) -> str | None:
    """The matched route's path template (`/api/v1/escalations/{escalation_id}/resolve`).

    API routes leave themselves in the scope. The few plain routes that do not (the
    OpenAPI document) have fixed paths, so a path that was answered without error and
    without a route in the scope is its own template; an unmatched one is None.
    """
    path = getattr(scope.get("route"), "path_format", None)
    if isinstance(path, str):
        return path
    return str(scope["path"]) if 0 < status < HTTPStatus.BAD_REQUEST else None
