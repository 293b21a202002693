"""`/healthz` (reachable and migrated) and `/metrics` (Prometheus), for operators."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from mdstudio_core.adapters import migrations
from mdstudio_core.entrypoints.http import metrics
from mdstudio_core.entrypoints.http.problems import documented, problem
from mdstudio_core.entrypoints.http.schemas import Health, JsonResponse

router = APIRouter(tags=["service"], default_response_class=JsonResponse)


@router.get("/healthz", responses=documented(Health, 503))
def healthz(request: Request) -> Response:
    """Reads the store's schema revision; 503 if the store is down or unmigrated."""
    revision = migrations.current_revision(request.app.state.engine)
    if revision is None:
        return problem(
            503, "unavailable", "the store has no schema: run `mdstudio db upgrade`", "/healthz"
        )
    return JsonResponse({"status": "ok", "revision": revision})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}, 401: {}, 404: {}},
)
async def metrics_endpoint(request: Request) -> Response:
    """Prometheus metrics, for a scraper sending `MDSTUDIO_METRICS_TOKEN` as a bearer token.
    Without that setting there are no metrics: 404, as for any path that does not exist."""
    state = request.app.state
    if not metrics.enabled(state.settings):
        return problem(404, "not-found", "Not Found", "/metrics")
    if not metrics.authorised(state.settings, request.headers.get("authorization")):
        return problem(401, "unauthorized", "the metrics token is missing or wrong", "/metrics")
    body, content_type = await asyncio.get_running_loop().run_in_executor(
        state.executor, metrics.exposition, state.engine, state.settings
    )
    return Response(body, media_type=content_type)
