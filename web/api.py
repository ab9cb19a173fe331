"""The JSON API under /api/v1 (paths and field names are the contract in API.md).

Handlers are plain functions: Starlette runs them in its thread pool, so reads
never block the event loop that also serves OTLP."""
from __future__ import annotations

import json

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tasktrail.query import values
from tasktrail.query.errors import BadRequest
from tasktrail.query.params import flag

from . import commands
from .idroutes import IdRoute, id_routes
from .log_tail import log_filters, logs_tail
from .queues import queue_api, queues_api
from .request_args import _int, _p, _qs
from .responses import JSONResponse




def apps(request: Request):
    return JSONResponse(_qs(request).apps())


def invocations(request: Request):
    p = request.query_params
    return JSONResponse(_qs(request).invocations(
        app=_p(request, "app"), status=p.getlist("status"), task=_p(request, "task"),
        runner=_p(request, "runner"), workflow=_p(request, "workflow"), parent=_p(request, "parent"),
        since=_p(request, "since"), until=_p(request, "until"), q=_p(request, "q"),
        limit=_int(request, "limit"), cursor=_p(request, "cursor"), sort=_p(request, "sort"),
        status_mode=_p(request, "status_mode")))


def invocation(request: Request):
    return JSONResponse(_qs(request).invocation(request.path_params["id"], _p(request, "app")))


def invocation_value(request: Request):
    """The whole value a detail previews: a download (attachment) of its bytes as stored."""
    inv_id, name = request.path_params["id"], request.path_params["name"]
    data, is_json = _qs(request).invocation_value(inv_id, name, _p(request, "app"))
    return download(data, values.filename(inv_id, name, is_json), is_json)


def log_body(request: Request):
    """The whole body of a log line whose preview was cut (its `values.message.url`)."""
    key = request.path_params["key"]
    return download(_qs(request).log_body(key), values.filename("log-" + key, "body", False), False)


def download(data: bytes, name: str, is_json: bool) -> Response:
    """`data` as an attachment named `name`: application/json or text/plain (UTF-8), with its length."""
    return Response(data, media_type="application/json" if is_json else "text/plain; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def history(request: Request):
    """Its status history; with `commands=true` the records of the commands aimed at it in line (issue 19)."""
    qs, inv_id = _qs(request), request.path_params["id"]
    rows = qs.history(inv_id, _p(request, "app"))
    if flag("commands", _p(request, "commands")):
        rows = commands.history_lines(rows, qs.invocation_commands(inv_id)["commands"])
    return JSONResponse(rows)



def family(request: Request):
    return JSONResponse(_qs(request).family(request.path_params["id"], _p(request, "app")))


def runners(request: Request):
    return JSONResponse(_qs(request).runners(_p(request, "app")))


def runner(request: Request):
    return JSONResponse(_qs(request).runner(request.path_params["id"], _p(request, "app"), cursor=_p(request, "cursor"),
                                            limit=_int(request, "limit")))


def _paged(request: Request, rows: list, kind: str) -> JSONResponse:
    """`rows` as JSON, with the next page's address in a Link header (rel="next") when there is one."""
    nxt = _qs(request).atomic_next_cursor(rows, _int(request, "limit"), kind)
    headers = {}
    if nxt:
        headers["Link"] = f'<{request.url.include_query_params(cursor=nxt)}>; rel="next"'
    return JSONResponse(rows, headers=headers)


def atomic_executions(request: Request):
    return _paged(request, _qs(request).atomic_executions(
        app=_p(request, "app"), since=_p(request, "since"), until=_p(request, "until"),
        runner=_p(request, "runner"), status=_p(request, "status"), limit=_int(request, "limit"),
        cursor=_p(request, "cursor")), "executions")


def atomic_decisions(request: Request):
    return _paged(request, _qs(request).atomic_decisions(
        app=_p(request, "app"), since=_p(request, "since"), until=_p(request, "until"),
        runner=_p(request, "runner"), reason=_p(request, "reason"), limit=_int(request, "limit"),
        cursor=_p(request, "cursor")), "decisions")


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
    return JSONResponse(_qs(request).invocation_logs(request.path_params["id"], limit=_int(request, "limit") or 1000))


def atomic_schedule(request: Request):
    return JSONResponse(_qs(request).atomic_schedule(_p(request, "app")))


def trigger_runs(request: Request):
    return JSONResponse(_qs(request).trigger_runs(
        app=_p(request, "app"), since=_p(request, "since"), until=_p(request, "until"),
        task=_p(request, "task"), event=_p(request, "event"), invocation=_p(request, "invocation"),
        limit=_int(request, "limit")))


MAX_EXPLORER_BYTES = 5 * 1024 * 1024


def logs(request: Request):
    return JSONResponse(_qs(request).logs(limit=_int(request, "limit"), cursor=_p(request, "cursor"),
                                          **log_filters(request)))


async def log_explorer(request: Request):
    body = await request.body()
    if len(body) > MAX_EXPLORER_BYTES:
        raise BadRequest(f"pasted text is over {MAX_EXPLORER_BYTES} bytes")
    text = body.decode("utf-8", errors="replace")
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest('JSON body must be {"text": "<log lines>"}') from None
        if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
            raise BadRequest('JSON body must be {"text": "<log lines>"}')
        text = doc["text"]
    return JSONResponse(await run_in_threadpool(_qs(request).explore, text))


def runs(request: Request):
    p = request.query_params
    return JSONResponse(_qs(request).runs(app=_p(request, "app"), task=_p(request, "task"), status=p.getlist("status"),
                                          since=_p(request, "since"), until=_p(request, "until"),
                                          sort=_p(request, "sort"), limit=_int(request, "limit"),
                                          cursor=_p(request, "cursor"), status_mode=_p(request, "status_mode"),
                                          q=_p(request, "q")))


def ops(request: Request):
    return JSONResponse(_qs(request).ops_with_writer(_p(request, "app")))


def timeline(request: Request):
    return JSONResponse(_qs(request).timeline(
        app=_p(request, "app"), since=_p(request, "since"), until=_p(request, "until"), task=_p(request, "task"),
        workflow=_p(request, "workflow"), runner=_p(request, "runner"),
        invocations=request.query_params.getlist("invocations") or None,
        limit=_int(request, "limit"), **timeline_options(request)))


def timeline_options(request: Request) -> dict:
    """The timeline's options (query/timeline_options.py) as given; `histogram_status` may be given empty."""
    p = request.query_params
    out = {k: _p(request, k) for k in ("resolution", "show_system", "show_atomic_service", "fit")}
    out["histogram_status"] = p.getlist("histogram_status") if "histogram_status" in p else None
    return out


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
    except (ValueError, RecursionError):  # RecursionError: JSON nested past the parser's depth
        raise BadRequest('body must be JSON: {"sql": "SELECT ..."}') from None
    if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
        raise BadRequest('body must be JSON: {"sql": "SELECT ..."}')
    answer = await run_in_threadpool(_qs(request).sql, body["sql"])
    return Response(answer.body(), media_type="application/json")


# Reads shared by an /api/v1 route and its page (web/pages.py): one place parses a request's parameters.
def anomalies_data(request: Request) -> dict:
    return _qs(request).anomalies(_p(request, "app"))


def tasks_data(request: Request) -> dict:
    return _qs(request).tasks(app=_p(request, "app"), since=_p(request, "since"), until=_p(request, "until"))


def task_data(request: Request) -> dict:
    return _qs(request).task(request.path_params["task_id"], app=_p(request, "app"), since=_p(request, "since"),
                             until=_p(request, "until"))


def call_data(request: Request) -> dict:
    """One call and its invocations (query/calls.py); `limit` caps the invocations listed."""
    return _qs(request).call(request.path_params["call_id"], app=_p(request, "app"), limit=_int(request, "limit"))


def workflow_types_data(request: Request) -> dict:
    return _qs(request).workflow_types(app=_p(request, "app"), since=_p(request, "since"),
                                       until=_p(request, "until"))


def workflow_runs_data(request: Request) -> dict:
    return _qs(request).workflow_runs(
        app=_p(request, "app"), workflow_type=_p(request, "type"), status=request.query_params.getlist("status"),
        since=_p(request, "since"), until=_p(request, "until"), limit=_int(request, "limit"))


def workflow_run_data(request: Request) -> dict:
    return _qs(request).workflow_run(request.path_params["id"], app=_p(request, "app"),
                                     histogram_status=request.query_params.getlist("histogram_status"))


def workflow_compare_data(request: Request) -> dict:
    return _qs(request).workflow_compare(request.query_params.getlist("runs"), app=_p(request, "app"))


def workflow_type_data(request: Request) -> dict:
    p = request.query_params
    return _qs(request).workflow_type(
        request.path_params["type"], app=_p(request, "app"), status=p.getlist("status"),
        limit=_int(request, "limit"), histogram_runs=p.getlist("histogram_workflow"),
        histogram_status=p.getlist("histogram_status"), since=_p(request, "since"), until=_p(request, "until"))


def _json(read):
    """The /api/v1 route of a shared read."""
    return lambda request: JSONResponse(read(request))


def openapi(request: Request):
    from .openapi import spec
    return JSONResponse(spec())


ROUTES = [
    *commands.ROUTES,   # issue 19 (web/commands.py): before the id routes they share a prefix with
    Route("/openapi.json", openapi),
    Route("/apps", apps),
    Route("/invocations", invocations),
    *id_routes("/invocations/", invocation, {"history": history, "family": family, "logs": invocation_logs,
                                             "values/{name}": invocation_value}),
    Route("/runners", runners),
    IdRoute("/runners/", runner),
    Route("/atomic-services/executions", atomic_executions),
    Route("/atomic-services/decisions", atomic_decisions),
    Route("/atomic-services/schedule", atomic_schedule),
    Route("/events", events),
    Route("/events/markers", event_markers),
    IdRoute("/events/", event),
    Route("/trigger-runs", trigger_runs),
    IdRoute("/trigger-runs/", trigger_run),
    Route("/timeline", timeline),
    IdRoute("/traces/", trace, param="trace_id"),
    Route("/overview", overview),
    Route("/anomalies", _json(anomalies_data)),
    Route("/tasks", _json(tasks_data)),
    IdRoute("/tasks/", _json(task_data), param="task_id"),
    IdRoute("/calls/", _json(call_data), param="call_id"),
    Route("/workflows", _json(workflow_types_data)),
    Route("/workflows/runs", _json(workflow_runs_data)),
    IdRoute("/workflows/runs/", _json(workflow_run_data)),
    Route("/workflows/compare", _json(workflow_compare_data)),
    IdRoute("/workflows/", _json(workflow_type_data), param="type"),
    Route("/logs", logs),
    Route("/logs/tail", logs_tail),
    Route("/logs/{key}/body", log_body),
    Route("/log-explorer", log_explorer, methods=["POST"]),
    Route("/runs", runs),
    Route("/ops", ops),
    Route("/sql", sql, methods=["POST"]),
    Route("/queues", queues_api),
    IdRoute("/queues/", queue_api, param="name"),
]
