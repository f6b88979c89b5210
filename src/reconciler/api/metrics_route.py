"""`GET /metrics`: the finance figures in Prometheus' text format, for a viewer.

The collector (`reconciler.projections.metrics`) reads the read models at each scrape,
after the same catch-up with the log as the finance routes (at most once a second).
The figures are money, so the endpoint asks for a viewer token like the rest of the
API; Prometheus sends one with `authorization: {credentials: <token>}` in its scrape
config. The reads run in the thread pool, not on the event loop.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from reconciler.api.auth import ViewerAccess  # noqa: TC001 - FastAPI reads it at runtime
from reconciler.api.context import Context  # noqa: TC001 - FastAPI reads it at runtime
from reconciler.api.errors import error_responses
from reconciler.api.finance import Views  # noqa: TC001 - FastAPI reads it at runtime

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Finance figures for Prometheus",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **error_responses(401, 403)},
    openapi_extra={"x-required-role": "viewer"},
)
async def metrics(context: Context, _viewer: ViewerAccess, _fresh: Views) -> Response:
    """Money, statuses, open cases, remedy times and SLA, read from the read models now."""
    body = await run_in_threadpool(generate_latest, context.metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
