"""Queues: the page `/queues` and its JSON twins `/api/v1/queues` and `/api/v1/queues/{name}` (pending
messages per queue over a window, its live consumers, "nobody consumes it" flagged: query/queues.py)."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .responses import JSONResponse

FILTERS = ("app", "since", "until")


def _p(request: Request, name: str):
    v = request.query_params.get(name)
    return v if v not in (None, "") else None


def queues_data(request: Request) -> dict:
    """`QueryService.queues` for the request's app, since and until (default the last hour)."""
    return request.app.state.query.queues(app=_p(request, "app"), since=_p(request, "since"),
                                          until=_p(request, "until"))


def queues_api(request: Request) -> Response:
    return JSONResponse(queues_data(request))


def queue_api(request: Request) -> Response:
    """One queue: its item with the window (404 when nothing names it in the window, 400 when several apps
    have it and no `app` is given)."""
    return JSONResponse(request.app.state.query.queues(
        app=_p(request, "app"), since=_p(request, "since"), until=_p(request, "until"),
        queue=request.path_params["name"], one=True))


def queues_page(request: Request) -> Response:
    from .pages import _api, render
    return render(request, "queues.html", "Queues", queues_data(request), _api("/api/v1/queues", request, FILTERS))
