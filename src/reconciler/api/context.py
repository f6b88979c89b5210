"""What the routes work with, built once by `create_api` and kept on the app; and `PREFIX`.

Routes get it through the `Context` dependency rather than from module globals, so that
one process can hold several apps (tests do) and nothing is opened at import.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from reconciler.projections.metrics import finance_registry

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from reconciler.api.auth import TokenRegistry
    from reconciler.domain.rules import Rules
    from reconciler.store import LogStore

PREFIX = "/api/v1"


@dataclass(frozen=True)
class ApiContext:
    """The log, the rules its engine runs with, the accepted tokens, and where Kafka is.

    `metrics` is the registry `/metrics` serves (the finance collector over the log).

    `actions` serialises operator actions within this process: each one checks its case
    against the log and then writes, and two at once could both pass the check.
    """

    store: LogStore
    rules: Rules
    tokens: TokenRegistry
    kafka_bootstrap: str | None = None
    actions: threading.Lock = field(default_factory=threading.Lock)

    @cached_property
    def metrics(self) -> CollectorRegistry:
        """The registry `/metrics` serves, made on first use (it reads the read models)."""
        return finance_registry(self.store, self.rules)


def api_context(request: Request) -> ApiContext:
    """The context of the app serving this request."""
    context: ApiContext = request.app.state.api_context
    return context


Context = Annotated[ApiContext, Depends(api_context)]
