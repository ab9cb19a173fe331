"""/metrics in Prometheus text format, from the registry the composition root built."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response


def metrics_endpoint(request: Request) -> Response:
    registry = request.app.state.registry
    if registry is None:
        return Response("", media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
