"""One error shape, mapped at one boundary: {"error": {"status": <int>, "message": "..."}}."""
from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tasktrail.query.errors import BadRequest, Conflict, NotFound, QueryTimeout, ReadersBusy, StoreClosed, StoreUnavailable

log = logging.getLogger("tasktrail.web")


def error_body(status: int, message: str) -> dict:
    return {"error": {"status": status, "message": message}}


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def _wants_html(request: Request) -> bool:
    return (not request.url.path.startswith("/api/") and request.query_params.get("format") != "json"
            and "text/html" in request.headers.get("accept", ""))


def answer(request: Request, status: int, message: str, headers: dict | None = None) -> Response:
    """The error as JSON, or as an HTML page for a browser asking for a page; same status, same message."""
    if _wants_html(request):
        from .pages import NAV, TEMPLATES

        return TEMPLATES.TemplateResponse(request, "error.html", {
            "title": f"Error {status}", "status": status, "message": message, "nav": NAV, "data": {},
            "api": None, "twin": None, "app": None, "path": request.url.path,
            "settings": request.app.state.page_settings}, status_code=status, headers=headers)
    return error_response(status, message, headers)


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return answer(request, 404, str(exc))


async def _bad_request(request: Request, exc: Exception) -> JSONResponse:
    return answer(request, 400, str(exc))


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return answer(request, 409, str(exc))


async def _timeout(request: Request, exc: Exception) -> JSONResponse:
    return answer(request, 504, str(exc))


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    return answer(request, 503, str(exc), {"Retry-After": "5"})


async def _busy(request: Request, exc: ReadersBusy) -> JSONResponse:
    return answer(request, 429, str(exc), {"Retry-After": str(max(1, round(exc.retry_after_s)))})


async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    return answer(request, exc.status_code, exc.detail or "error", getattr(exc, "headers", None))


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return answer(request, 500, f"internal error: {type(exc).__name__}")


EXCEPTION_HANDLERS = {
    NotFound: _not_found,
    BadRequest: _bad_request,
    Conflict: _conflict,
    QueryTimeout: _timeout,
    StoreClosed: _unavailable,
    StoreUnavailable: _unavailable,
    ReadersBusy: _busy,
    HTTPException: _http,
    Exception: _server_error,
}
