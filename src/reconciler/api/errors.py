"""Every error the API answers is JSON of one shape: `{"error": {"code", "message", "details"}}`.

`install_error_handlers` makes it so for:

- `ApiError`, raised by the routes and the authentication: its status, code and message;
- FastAPI's request validation: 422 `validation_failed`, `details` listing each problem's
  location, message and type (never the input: it may be long, or a secret);
- Starlette's HTTP errors: 400 `bad_request` (a body that is not even text), 404
  `not_found`, 405 `method_not_allowed` (with `Allow`), any other status `http_error`.

Unexpected exceptions become 500 `internal_error` in the access-log middleware
(`access`), which logs them. `error_responses` documents the statuses a route can answer
with, in the OpenAPI spec, with this shape.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

if TYPE_CHECKING:
    from collections.abc import Mapping

    from fastapi import FastAPI, Request

_CODES = {
    HTTPStatus.BAD_REQUEST: "bad_request",
    HTTPStatus.NOT_FOUND: "not_found",
    HTTPStatus.METHOD_NOT_ALLOWED: "method_not_allowed",
}
_DESCRIPTIONS = {
    HTTPStatus.BAD_REQUEST: "A filter or cursor the query cannot take (`invalid_query`), "
    "or a body that cannot be read (`bad_request`).",
    HTTPStatus.UNAUTHORIZED: "No bearer token, or one that is not valid (`unauthenticated`).",
    HTTPStatus.FORBIDDEN: "The token's role may not do this (`forbidden`).",
    HTTPStatus.NOT_FOUND: "No such thing (`..._not_found`).",
    HTTPStatus.CONFLICT: "The engine refuses the action; the message says why (`refused`).",
    HTTPStatus.UNPROCESSABLE_ENTITY: "The request does not validate (`validation_failed`).",
    HTTPStatus.SERVICE_UNAVAILABLE: "The store or Kafka does not answer (`..._unavailable`).",
}


class ErrorDetail(BaseModel):
    """What went wrong: a stable code for programs, a message for people, and details."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(examples=["forbidden"])
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(frozen=True)

    error: ErrorDetail


class ApiError(Exception):
    """An error answered as JSON: HTTP status, code, message, and optional details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,  # noqa: ANN401 - any JSON
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Keep what the response will say."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Any = None,  # noqa: ANN401 - any JSON
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The JSON response for an error."""
    body = ErrorResponse(error=ErrorDetail(code=code, message=message, details=details))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error statuses, with the error shape."""
    return {
        status: {"model": ErrorResponse, "description": _DESCRIPTIONS[HTTPStatus(status)]}
        for status in statuses
    }


def install_error_handlers(app: FastAPI) -> None:
    """Answer API errors, validation failures and HTTP errors as JSON errors."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(HTTPException, _http_error)


async def _api_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)  # noqa: S101 - registered for ApiError only
    return error_response(
        error.status, error.code, error.message, details=error.details, headers=error.headers
    )


async def _validation_failed(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)  # noqa: S101 - registered for it only
    problems = [
        {
            "location": [str(part) for part in problem.get("loc", ())],
            "message": str(problem.get("msg", "")).removeprefix("Value error, "),
            "type": str(problem.get("type", "")),
        }
        for problem in error.errors()
    ]
    first = problems[0] if problems else {"location": [], "message": "invalid request"}
    message = f"{'.'.join(first['location']) or 'request'}: {first['message']}"
    return error_response(
        HTTPStatus.UNPROCESSABLE_ENTITY, "validation_failed", message, details=problems
    )


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)  # noqa: S101 - registered for it only
    status = HTTPStatus(error.status_code)
    code = _CODES.get(status, "http_error")
    if status is HTTPStatus.NOT_FOUND:
        message = f"no endpoint at {request.url.path}"
    elif status is HTTPStatus.METHOD_NOT_ALLOWED:
        allowed = (error.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed here; allowed: {allowed}"
    else:
        message = str(error.detail) if error.detail else status.phrase
    return error_response(status, code, message, headers=error.headers)
