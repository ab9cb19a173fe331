"""create_app: the web/API Starlette app. The query service is passed in; the web reads only through it."""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlencode, urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tasktrail.proto.bearer import token_ok
from tasktrail.query.service import QueryService

from . import api, pages
from .commands import AGENT_PATH
from .errors import EXCEPTION_HANDLERS, error_response
from .metrics import TailCollector, metrics_endpoint
from .tail_hub import TailHub

OPEN_PATHS = ("/healthz", "/readyz", "/login", "/logout")
# The login cookie holds a value derived from the API token (session_value), never the token itself.
COOKIE = "tasktrail_session"
# Scripts: only our own files (no inline script, no eval). Styles may be inline: the graph library sets them.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                 b"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                                 b"form-action 'self'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


@dataclass(frozen=True)
class WebSettings:
    api_token: Optional[str] = None
    metrics_public: bool = False
    jaeger_url: Optional[str] = None
    tempo_url: Optional[str] = None
    tail_interval_s: float = 0.25
    max_tails: int = 256                 # live log tails open at once (web/tail_hub.py)
    max_tails_per_client: int = 16       # ... and per client address
    public_url: Optional[str] = None  # https:// here makes the login cookie Secure
    ingest_token: Optional[str] = None   # what agents polling for commands send (web/commands.py)
    read_only: bool = False              # --read-only: every action off, its buttons hidden


def session_value(api_token: str) -> str:
    """The login cookie's value: HMAC-SHA256 of a fixed label keyed with the API token, hex (64 chars).

    It proves the browser logged in with the token without holding it (the cookie cannot be replayed as
    a bearer token, nor read back into one), and it changes when the token does, which ends every session."""
    return hmac.new(api_token.encode(), b"tasktrail browser session v1", hashlib.sha256).hexdigest()


class TokenMiddleware:
    """With an API token configured, everything but health, login (and /metrics if public) needs it,
    as `Authorization: Bearer` or as the cookie the login form sets."""

    def __init__(self, app: ASGIApp, settings: WebSettings) -> None:
        self.app = app
        self.settings = settings
        self.session = session_value(settings.api_token) if settings.api_token else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.settings.api_token:
            path = scope["path"]
            if not (path in OPEN_PATHS or path.startswith("/static/") or path == AGENT_PATH
                    or (path == "/metrics" and self.settings.metrics_public)):
                request = Request(scope)
                cookie = request.cookies.get(COOKIE)
                ok = token_ok(self.settings.api_token, request.headers.get("authorization")) or (
                    cookie is not None and hmac.compare_digest(cookie.encode(), self.session.encode()))
                if not ok:
                    if request.method == "GET" and not path.startswith("/api/") and \
                            "text/html" in request.headers.get("accept", ""):
                        sent = (scope.get("raw_path") or path.encode()).decode("latin-1")  # an id's %2F, %23 kept
                        await RedirectResponse("/login?" + urlencode({"next": sent}), status_code=303)(
                            scope, receive, send)
                        return
                    resp = error_response(401, "missing or wrong API token (Authorization: Bearer <token>)",
                                          {"WWW-Authenticate": "Bearer"})
                    await resp(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class SecurityMiddleware:
    """Security headers on every answer; mutating requests must come from this origin (CSRF)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(scope["headers"])
            origin = (headers.get(b"origin") or headers.get(b"referer") or b"").decode("latin-1")
            host = headers.get(b"host", b"").decode("latin-1")
            if origin and urlsplit(origin).netloc != host:
                await error_response(403, f"cross-site request refused: origin {origin!r} is not {host!r}")(
                    scope, receive, send)
                return
            # A browser says where a request comes from even when it sends no Origin: a page of another site
            # (or another port of this host: "same-site") may not act here. Clients other than browsers send
            # no Sec-Fetch-Site.
            fetch_site = headers.get(b"sec-fetch-site", b"").decode("latin-1").lower()
            if fetch_site and fetch_site not in ("same-origin", "none"):
                await error_response(403, f"cross-site request refused: Sec-Fetch-Site is {fetch_site!r}")(
                    scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                present = {k.lower() for k, _ in message["headers"]}
                message["headers"] += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def readyz(request: Request) -> Response:
    try:
        version = request.app.state.query.schema_version()
    except Exception as exc:  # the store is not open (yet)
        return error_response(503, f"store not ready: {exc}")
    return JSONResponse({"status": "ready", "schema_version": version})


def _served_over_https(request: Request, settings: WebSettings) -> bool:
    """True when the browser reaches this server over https: the request's scheme (uvicorn takes it from
    X-Forwarded-Proto when the proxy is trusted, FORWARDED_ALLOW_IPS) or an https --public-url."""
    return request.url.scheme == "https" or (settings.public_url or "").lower().startswith("https://")


async def login(request: Request) -> Response:
    """A token form for browsers: sets an HttpOnly, SameSite=Strict cookie holding session_value(token),
    Secure when served over https."""
    settings: WebSettings = request.app.state.web_settings
    nxt = request.query_params.get("next") or "/"
    if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        nxt = "/"
    error = None
    if request.method == "POST":
        form = await request.form()
        token = str(form.get("token") or "")
        if settings.api_token and hmac.compare_digest(token.encode(), settings.api_token.encode()):
            resp = RedirectResponse(nxt, status_code=303)
            resp.set_cookie(COOKIE, session_value(settings.api_token), httponly=True, samesite="strict",
                            secure=_served_over_https(request, settings))
            return resp
        error = "That token is not the one this server was started with."
    return pages.TEMPLATES.TemplateResponse(request, "login.html", {
        "title": "Log in", "error": error, "next": nxt, "nav": [], "data": {}, "api": None, "twin": None,
        "app": None, "path": "/login", "settings": request.app.state.page_settings},
        status_code=401 if error else 200)


async def logout(request: Request) -> Response:
    """POST only (the CSRF check covers it): expires the login cookie and sends the browser to /login."""
    settings: WebSettings = request.app.state.web_settings
    resp = RedirectResponse("/login" if settings.api_token else "/", status_code=303)
    resp.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=_served_over_https(request, settings))
    return resp


def _api_mount() -> Mount:
    """/api/v1 and its routes. Starlette's Mount matches the rest of the path with `.*`, which stops at a
    newline: an id holding one (%0A) would reach no route, while the page for it does. The rest is matched
    with DOTALL, and the IdRoutes inside read the id as sent."""
    mount = Mount("/api/v1", routes=api.ROUTES)
    mount.path_regex = re.compile(mount.path_regex.pattern, re.DOTALL)
    return mount


def create_app(query: QueryService, settings: WebSettings = WebSettings(), registry=None, commands=None) -> Starlette:
    """The app over `query`; `commands`: the command desk (tasktrail/commands.py) or None (no actions)."""
    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/metrics", metrics_endpoint),
        _api_mount(),
        Mount("/static", app=StaticFiles(directory=str(Path(__file__).with_name("static"))), name="static"),
        *pages.ROUTES,
    ]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS,
                    middleware=[Middleware(SecurityMiddleware), Middleware(TokenMiddleware, settings=settings)])
    app.state.query = query
    app.state.registry = registry
    app.state.web_settings = settings
    app.state.commands = commands
    app.state.tail_interval_s = settings.tail_interval_s
    app.state.tails = TailHub(query, interval_s=settings.tail_interval_s, max_total=settings.max_tails,
                              max_per_client=settings.max_tails_per_client)
    if registry is not None:
        registry.register(TailCollector(app.state.tails))
    app.state.page_settings = {"jaeger": bool(settings.jaeger_url), "tempo": bool(settings.tempo_url),
                               "login": bool(settings.api_token), "read_only": settings.read_only}
    return app
