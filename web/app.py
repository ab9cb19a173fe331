"""create_app: the web/API Starlette app. Resources (store, query service) are passed in."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tasktrail.query.service import QueryService

from . import api
from .auth import token_ok
from .errors import EXCEPTION_HANDLERS, error_response
from .metrics import metrics_endpoint

OPEN_PATHS = ("/healthz", "/readyz")


@dataclass(frozen=True)
class WebSettings:
    api_token: Optional[str] = None
    metrics_public: bool = True


class TokenMiddleware:
    """With an API token configured, everything but health (and /metrics if public) needs it."""

    def __init__(self, app: ASGIApp, settings: WebSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.settings.api_token:
            path = scope["path"]
            if not (path in OPEN_PATHS or (path == "/metrics" and self.settings.metrics_public)):
                auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1") or None
                if not token_ok(self.settings.api_token, auth):
                    resp = error_response(401, "missing or wrong API token (Authorization: Bearer <token>)",
                                          {"WWW-Authenticate": "Bearer"})
                    await resp(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def readyz(request: Request) -> Response:
    store = request.app.state.store
    try:
        version = store.schema_version()
    except Exception as exc:  # the store is not open (yet)
        return error_response(503, f"store not ready: {exc}")
    return JSONResponse({"status": "ready", "schema_version": version})


def index(request: Request) -> Response:
    """A plain landing page until the full UI (issue 3): links to the API."""
    ov = request.app.state.query.overview(request.query_params.get("app") or None)
    rows = "".join(f"<tr><td>{s}</td><td>{n}</td></tr>" for s, n in ov["counts_by_status"].items() if n)
    html = ("<!doctype html><meta charset=utf-8><title>tasktrail</title>"
            "<h1>tasktrail</h1><p>JSON twin: <a href='/api/v1/overview'>/api/v1/overview</a> · "
            "<a href='/api/v1/invocations'>invocations</a> · <a href='/api/v1/runners'>runners</a> · "
            "<a href='/api/v1/apps'>apps</a></p>"
            f"<table><tr><th>status</th><th>invocations</th></tr>{rows}</table>")
    return HTMLResponse(html)


def create_app(query: QueryService, store, settings: WebSettings = WebSettings(), registry=None) -> Starlette:
    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        Mount("/api/v1", routes=api.ROUTES),
    ]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS,
                    middleware=[Middleware(TokenMiddleware, settings=settings)])
    app.state.query = query
    app.state.store = store
    app.state.registry = registry
    return app
