"""`GET /api/v1/health`: the process answers, and says whether its store does.

It needs no token, so that a load balancer or an orchestrator can probe it. It answers
200 while the process serves, even when the store does not answer (`degraded`): a
liveness probe should not restart an API whose database is down. A readiness probe
should look at `store`.
"""

import structlog
from eventsourcing.persistence import PersistenceError
from fastapi import APIRouter

from reconciler.api.context import PREFIX, Context
from reconciler.api.models import Health

log = structlog.get_logger("reconciler.api")

router = APIRouter(prefix=PREFIX, tags=["health"])


@router.get("/health", summary="Liveness, and whether the store answers")
def health(context: Context) -> Health:
    """`ok` when the store answers a read, `degraded` when it does not."""
    try:
        context.store.last_position()
    except (PersistenceError, OSError) as error:
        log.warning("api_store_unavailable", error=type(error).__name__)
        return Health(status="degraded", store="unavailable")
    return Health(status="ok", store="ok")
