"""The artifact routes (DESIGN §14): an artifact's bytes by digest, checked on read, and a
run's list of artifacts. Both need a token that may read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from smithers.runtime.artifacts import run_artifacts, sha256_of
from smithers.service.http import json_response, principal, refuse
from smithers.store.base import need_run

if TYPE_CHECKING:
    from smithers.service.app import Endpoint, Service

__all__ = ["ARTIFACT_ROUTES", "artifact", "artifacts_of_run"]

_API = "/api/v1"


async def artifact(service: Service, request: Request) -> Response:
    """GET /api/v1/artifacts/{sha256}: the bytes (``application/octet-stream``); 404 when
    unknown, 500 when the stored bytes no longer match their digest."""
    store = service.store
    principal(store, request, "read")
    sha = sha256_of(request.path_params["sha256"])
    data = store.artifact_data(sha)
    if data is None:
        refuse(
            404,
            "NotFound",
            f"No artifact {sha} in this store; list a run's artifacts at "
            f"{_API}/runs/RUN_ID/artifacts.",
        )
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"X-Content-Type-Options": "nosniff", "ETag": f'"{sha}"'},
    )


async def artifacts_of_run(service: Service, request: Request) -> Response:
    """GET /api/v1/runs/{run_id}/artifacts: the list of ``smithers artifact ls --json``."""
    store = service.store
    principal(store, request, "read")
    run_id = request.path_params["run_id"]
    need_run(store, run_id)
    return json_response(run_artifacts(store, run_id))


ARTIFACT_ROUTES: list[tuple[str, Endpoint, list[str]]] = [
    (f"{_API}/artifacts/{{sha256}}", artifact, ["GET"]),
    (f"{_API}/runs/{{run_id}}/artifacts", artifacts_of_run, ["GET"]),
]
