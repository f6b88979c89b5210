"""Bearer tokens in, a principal out: who is calling, and with which role.

The registry keeps only each token's SHA-256. A presented token is hashed and compared
with every known hash by `hmac.compare_digest`, all of them every time, so the time taken
says nothing about the token or which entry it matched.

Routes ask for a role with the `ViewerAccess` or `OperatorAccess` dependency:

- no `Authorization: Bearer` header: 401 `unauthenticated`, `WWW-Authenticate: Bearer`;
- a token that is not known: the same, with `error="invalid_token"`;
- a known token whose role is short of the one asked: 403 `forbidden`.

The principal is also left in the request's state, for the access log.
"""

import hashlib
import hmac
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from reconciler.api.context import api_context
from reconciler.api.errors import ApiError
from reconciler.api.settings import Role, TokenSpec
from reconciler.config import ConfigError

REALM = 'Bearer realm="reconciler"'


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a token belongs to (recorded as the operator of their actions), and their role."""

    name: str
    role: Role


class TokenRegistry:
    """The accepted tokens, by SHA-256 only."""

    def __init__(self, tokens: Iterable[TokenSpec]) -> None:
        """Keep each token's hash and principal; ConfigError if one token is given twice."""
        entries: dict[bytes, Principal] = {}
        for spec in tokens:
            digest = bytes.fromhex(spec.sha256)
            if digest in entries:
                msg = f"one token is given twice, for {entries[digest].name} and {spec.name}"
                raise ConfigError(msg)
            entries[digest] = Principal(spec.name, spec.role)
        self._entries = tuple(entries.items())

    def __len__(self) -> int:
        """How many tokens are accepted."""
        return len(self._entries)

    def identify(self, token: str) -> Principal | None:
        """The principal whose token this is, or None; in time independent of the token."""
        presented = hashlib.sha256(token.encode()).digest()
        found = None
        for digest, principal in self._entries:
            if hmac.compare_digest(digest, presented):
                found = principal
        return found


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerToken",
    description="A token configured in RECONCILER_API_TOKENS or RECONCILER_API_TOKENS_FILE.",
)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from the bearer token; 401 without a valid one."""
    if credentials is None:
        msg = "a bearer token is required (Authorization: Bearer <token>)"
        raise _unauthenticated(msg, "")
    principal = api_context(request).tokens.identify(credentials.credentials)
    if principal is None:
        msg = "the bearer token is not valid"
        raise _unauthenticated(msg, ', error="invalid_token"')
    request.state.principal = principal
    return principal


def require(role: Role) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency that lets in callers whose role grants `role`, and refuses others (403)."""

    async def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.role.grants(role):
            message = (
                f"this needs the {role} role; the token of {principal.name!r} is {principal.role}"
            )
            raise ApiError(HTTPStatus.FORBIDDEN, "forbidden", message)
        return principal

    return dependency


def _unauthenticated(message: str, error: str) -> ApiError:
    return ApiError(
        HTTPStatus.UNAUTHORIZED,
        "unauthenticated",
        message,
        headers={"WWW-Authenticate": REALM + error},
    )


ViewerAccess = Annotated[Principal, Depends(require(Role.VIEWER))]
OperatorAccess = Annotated[Principal, Depends(require(Role.OPERATOR))]
