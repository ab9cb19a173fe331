"""The JSON API under /api/v1 (paths and field names are the contract in API.md).

Handlers are plain functions: Starlette runs them in its thread pool, so reads
never block the event loop that also serves OTLP."""
from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from .responses import JSONResponse
from starlette.routing import Route

from tasktrail.query.errors import BadRequest
from tasktrail.query.service import QueryService


def _qs(request: Request) -> QueryService:
    return request.app.state.query


def _int(request: Request, name: str):
    v = request.query_params.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {v!r}") from None


def _p(request: Request, name: str):
    v = request.query_params.get(name)
    return v if v not in (None, "") else None


def apps(request: Request):
    return JSONResponse(_qs(request).apps())


def invocations(request: Request):
    p = request.query_params
    return JSONResponse(_qs(request).invocations(
        app=_p(request, "app"), status=p.getlist("status"), task=_p(request, "task"),
        runner=_p(request, "runner"), workflow=_p(request, "workflow"), parent=_p(request, "parent"),
        since=_p(request, "since"), until=_p(request, "until"), q=_p(request, "q"),
        limit=_int(request, "limit"), cursor=_p(request, "cursor"), sort=_p(request, "sort")))


def invocation(request: Request):
    return JSONResponse(_qs(request).invocation(request.path_params["id"], _p(request, "app")))


def history(request: Request):
    return JSONResponse(_qs(request).history(request.path_params["id"], _p(request, "app")))


def family(request: Request):
    return JSONResponse(_qs(request).family(request.path_params["id"], _p(request, "app")))


def runners(request: Request):
    return JSONResponse(_qs(request).runners(_p(request, "app")))


def runner(request: Request):
    return JSONResponse(_qs(request).runner(request.path_params["id"], _p(request, "app")))


def atomic_executions(request: Request):
    return JSONResponse(_qs(request).atomic_executions(
        app=_p(request, "app"), since=_p(request, "since"), until=_p(request, "until"),
        runner=_p(request, "runner"), status=_p(request, "status"), limit=_int(request, "limit")))


def atomic_decisions(request: Request):
    return JSONResponse(_qs(request).atomic_decisions(
        app=_p(request, "app"), since=_p(request, "since"), until=_p(request, "until"),
        runner=_p(request, "runner"), reason=_p(request, "reason"), limit=_int(request, "limit")))


def events(request: Request):
    return JSONResponse(_qs(request).events(
        app=_p(request, "app"), code=_p(request, "code"), since=_p(request, "since"),
        until=_p(request, "until"), matched=_p(request, "matched"), triggered=_p(request, "triggered"),
        limit=_int(request, "limit")))


def event(request: Request):
    return JSONResponse(_qs(request).event(request.path_params["id"]))


def trigger_run(request: Request):
    return JSONResponse(_qs(request).trigger_run(request.path_params["id"]))


def invocation_logs(request: Request):
    return JSONResponse(_qs(request).invocation_logs(request.path_params["id"]))


def atomic_schedule(request: Request):
    return JSONResponse(_qs(request).atomic_schedule(_p(request, "app")))


def trigger_runs(request: Request):
    return JSONResponse(_qs(request).trigger_runs(
        app=_p(request, "app"), since=_p(request, "since"), until=_p(request, "until"),
        task=_p(request, "task"), event=_p(request, "event"), invocation=_p(request, "invocation"),
        limit=_int(request, "limit")))


def timeline(request: Request):
    return JSONResponse(_qs(request).timeline(
        app=_p(request, "app"), since=_p(request, "since"), until=_p(request, "until"), task=_p(request, "task"),
        workflow=_p(request, "workflow"), runner=_p(request, "runner"), invocations=_p(request, "invocations"),
        limit=_int(request, "limit")))


def event_markers(request: Request):
    return JSONResponse(_qs(request).event_markers(
        app=_p(request, "app"), since=_p(request, "since"), until=_p(request, "until"), code=_p(request, "code"),
        state=_p(request, "state"), limit=_int(request, "limit")))


def trace(request: Request):
    return JSONResponse(_qs(request).trace(request.path_params["trace_id"]))


def overview(request: Request):
    return JSONResponse(_qs(request).overview(_p(request, "app")))


async def sql(request: Request):  # reads the body, then runs the query off the loop
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise BadRequest('body must be JSON: {"sql": "SELECT ..."}') from None
    if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
        raise BadRequest('body must be JSON: {"sql": "SELECT ..."}')
    return JSONResponse(await run_in_threadpool(_qs(request).sql, body["sql"]))


ROUTES = [
    Route("/apps", apps),
    Route("/invocations", invocations),
    Route("/invocations/{id}", invocation),
    Route("/invocations/{id}/history", history),
    Route("/invocations/{id}/family", family),
    Route("/invocations/{id}/logs", invocation_logs),
    Route("/runners", runners),
    Route("/runners/{id}", runner),
    Route("/atomic-services/executions", atomic_executions),
    Route("/atomic-services/decisions", atomic_decisions),
    Route("/atomic-services/schedule", atomic_schedule),
    Route("/events", events),
    Route("/events/markers", event_markers),
    Route("/events/{id}", event),
    Route("/trigger-runs", trigger_runs),
    Route("/trigger-runs/{id}", trigger_run),
    Route("/timeline", timeline),
    Route("/traces/{trace_id}", trace),
    Route("/overview", overview),
    Route("/sql", sql, methods=["POST"]),
]
