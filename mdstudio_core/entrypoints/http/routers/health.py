"""`/healthz`: reachable and migrated, without authentication."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mdstudio_core.adapters import migrations
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
