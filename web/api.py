"""The JSON API under /api/v1 (paths and field names are the contract in API.md).

Handlers are plain functions: Starlette runs them in its thread pool, so reads
never block the event loop that also serves OTLP."""
from __future__ import annotations

import json

import asyncio

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from . import commands
from .errors import error_response
from .idroutes import IdRoute, id_routes
from .queues import queue_api, queues_api
from .responses import JSONResponse
from .tail_hub import TailFilter, TailHub, TooManyTails, events as sse_events, read_after
from starlette.routing import Route

from tasktrail.query import values
from tasktrail.query.errors import BadRequest
from tasktrail.query.params import flag
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


LOG_FILTERS = ("app", "q", "level", "runner", "worker", "invocation", "task", "since", "until")
MAX_EXPLORER_BYTES = 5 * 1024 * 1024


def log_filters(request: Request) -> dict:
    return {k: _p(request, k) for k in LOG_FILTERS}


def logs(request: Request):
    return JSONResponse(_qs(request).logs(limit=_int(request, "limit"), cursor=_p(request, "cursor"),
                                          **log_filters(request)))


async def logs_tail(request: Request):
    """Server-Sent Events: one `log` event per new line matching the filters, as it is committed, from the
    shared poller (web/tail_hub.py). `Last-Event-ID` (or `after`) resumes after a batch; `backfill=N`
    first sends the last N lines. Past --max-tails or --max-tails-per-client: 429 with Retry-After."""
    qs = _qs(request)
    filters = log_filters(request)
    filters.pop("until", None)
    qs._log_filters(**filters)  # bad filters answer 400 before the stream starts
    flt = TailFilter.of(filters)
    resume = request.headers.get("last-event-id") or _p(request, "after")
    if resume is not None:
        try:
            resume = int(resume)
        except ValueError:
            raise BadRequest(f"Last-Event-ID / after must be a batch number, got {resume!r}") from None
    backfill = min(_int(request, "backfill") or 0, 1000)
    if backfill < 0:
        raise BadRequest(f"backfill must be a number of lines (at most 1000 are sent), got {backfill}")
    hub: TailHub = request.app.state.tails
    client = request.client.host if request.client else "unknown"
    try:
        tail, at = await hub.open(client, flt, resume)
    except TooManyTails as exc:
        return error_response(429, str(exc), {"Retry-After": str(exc.retry_after_s)})

    async def stream():
        yield ": tasktrail live tail\n\n"
        if backfill:
            page = await run_in_threadpool(lambda: qs.logs(limit=backfill, **filters))
            for line in reversed(page["items"]):
                yield f"id: {tail.after}\nevent: log\ndata: {orjson.dumps(line).decode()}\n\n"
        while tail.after < at:  # resuming from before the poller: this tail's own reads, up to where it stood
            lines, last, more = await run_in_threadpool(lambda: read_after(qs, tail.after, **filters))
            lines = [line for line in lines if line["batch"] <= at]
            if lines:
                yield b"".join(sse_events(lines))
            tail.after = at if not more or not lines else lines[-1]["batch"]
        quiet = 0.0
        while True:
            chunk = await hub.take(tail, 1.0)
            if chunk:
                quiet = 0.0
                yield chunk
            if tail.lagging:
                yield ": this client fell too far behind; reconnect with Last-Event-ID to resume\n\n"
                return
            if not chunk:
                quiet += 1.0
                if quiet >= 15:
                    quiet = 0.0
                    yield ": keep-alive\n\n"

    return _TailResponse(stream(), hub, tail, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class _TailResponse(StreamingResponse):
    """The stream of one tail; its place under the caps is given back however the stream ends."""

    def __init__(self, content, hub: TailHub, tail, **kw) -> None:
        super().__init__(content, **kw)
        self._hub, self._tail = hub, tail

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._hub.close(self._tail)


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
