"""HTML pages. Each page builds one context dict; `?format=json` returns that dict (the page's
JSON twin) and every page links its /api/v1 twin as rel=alternate. Page data reaches
the browser as one JSON blob (no inline script), so a strict CSP holds.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from tasktrail.proto.status import ACTIVE_STATUSES, FINAL_STATUSES, STATUS_COLORS, STATUSES, UNKNOWN_COLOR
from tasktrail.proto.urlpath import segment
from tasktrail.query.errors import NotFound
from tasktrail.query.search import HELP as SEARCH_HELP, BadSearch
from tasktrail.query.service import QueryService
from tasktrail.query.timeline_options import RESOLUTIONS

from . import api as reads
from .request_args import _int, _p
from . import commands
from .idroutes import IdRoute
from .queues import queues_page
from .responses import JSONResponse
from .runner_labels import labels_for, rendering, runner_label

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
TEMPLATES.env.auto_reload = False  # templates are files of the installed package: compiled once, never stat'ed again
TEMPLATES.env.globals.update(STATUS_COLORS=STATUS_COLORS, STATUSES=STATUSES, UNKNOWN_COLOR=UNKNOWN_COLOR,
                             FINAL_STATUSES=FINAL_STATUSES)
TEMPLATES.env.globals["runner_label"] = runner_label
TEMPLATES.env.filters["seg"] = segment  # an id as one path segment: href="/runners/{{ id|seg }}"
NAV = [("/", "Overview"), ("/anomalies", "Anomalies"), ("/ops", "Ops"), ("/runs", "Runs"),
       ("/invocations", "Invocations"), ("/timeline", "Timeline"), ("/tasks", "Tasks"), ("/workflows", "Workflows"),
       ("/logs", "Logs"), ("/log-explorer", "Log explorer"), ("/runners", "Runners"),
       ("/atomic-services", "Atomic services"), ("/events", "Events"), ("/trigger-runs", "Trigger runs"),
       ("/sql", "SQL")]
NAV.insert(NAV.index(("/runners", "Runners")) + 1, ("/queues", "Queues"))  # issue 18: queue depths (web/queues.py)

# Rows per page of the paginated tables on a page (atomic services: executions, decisions).
PAGE = 50


def _qs(request: Request) -> QueryService:
    return request.app.state.query


def render(request: Request, template: str, title: str, data: dict, api: str | None, live=None, **extra) -> Response:
    """The page, or its JSON twin with ?format=json. `extra`: template-only values (not in the twin); `live`:
    the Liveness the page's runners were read with (their labels come from its rows)."""
    if request.query_params.get("format") == "json":
        return JSONResponse(data)
    app = _p(request, "app")
    # The path as sent (request.url re-parses the decoded path, so an id's '#' or '?' would cut it).
    sent = request.scope.get("raw_path", b"").decode("latin-1") or quote(request.scope["path"])
    twin = sent + "?" + urlencode([*((k, v) for k, v in request.query_params.multi_items() if k != "format"),
                                   ("format", "json")])
    labels = labels_for(_qs(request), data, live)
    with rendering(labels):  # runner labels for the `runner` macro (web/runner_labels.py) and the page's scripts
        return TEMPLATES.TemplateResponse(request, template, {
            "title": title, "data": data, "api": api, "twin": twin, "nav": NAV, "runner_labels": labels,
            "app": app, "path": request.scope["path"], "settings": request.app.state.page_settings, **extra})


def overview(request: Request) -> Response:
    qs, app = _qs(request), _p(request, "app")
    runner_list, live = qs.runners_live(app)  # read once: the overview's counts, anomalies and runners table
    ov = qs.overview(app, runners=runner_list, live=live)
    ov["in_flight_items"] = qs.invocations(app=app, status=sorted(ACTIVE_STATUSES), limit=20,
                                           sort="-updated_at")["items"]
    ov["recent_failures"] = qs.invocations(app=app, status=["FAILED"], limit=20, sort="-updated_at")["items"]
    ov["runner_list"] = runner_list
    return render(request, "overview.html", "Overview", ov, "/api/v1/overview", live=live)


def invocations(request: Request) -> Response:
    qs = _qs(request)
    p = request.query_params
    filters = {"status": p.getlist("status"), "task": _p(request, "task"), "runner": _p(request, "runner"),
               "workflow": _p(request, "workflow"), "parent": _p(request, "parent"), "since": _p(request, "since"),
               "until": _p(request, "until"), "q": _p(request, "q"), "sort": _p(request, "sort"),
               "status_mode": _p(request, "status_mode")}
    page, search_error = _searched(request, lambda: qs.invocations(
        app=_p(request, "app"), limit=_int(request, "limit"), cursor=_p(request, "cursor"), **filters))
    data = {**page, "filters": {**filters, "status": [s.upper() for v in filters["status"] for s in v.split(",") if s]}}
    keep = [(k, v) for k, v in request.query_params.multi_items() if k not in ("cursor", "format")]
    data["next_url"] = ("/invocations?" + urlencode(keep + [("cursor", page["next_cursor"])])
                        if page["next_cursor"] else None)
    api = "/api/v1/invocations" + ("?" + urlencode([kv for kv in keep if kv[0] != "format"]) if keep else "")
    return _status(render(request, "invocations.html", "Invocations", data, api, search_error=search_error,
                          search_help=SEARCH_HELP), search_error)


def _searched(request: Request, read) -> tuple[dict, str | None]:
    """(read(), None), or for a page (not its JSON twin) whose search is malformed, (an empty page, the
    message) so the page shows it under the search box; the twin answers the one error shape."""
    try:
        return read(), None
    except BadSearch as e:
        if request.query_params.get("format") == "json":
            raise
        return {"items": [], "next_cursor": None, "running": False}, str(e)


def _status(response: Response, search_error: str | None) -> Response:
    if search_error:
        response.status_code = 400
    return response


def invocation(request: Request) -> Response:
    qs, inv_id = _qs(request), request.path_params["id"]
    # The HTML page loads its family and log lines after it shows (web/static/invocation-parts-1.js);
    # its JSON twin answers them as before.
    detail = qs.invocation_page(inv_id, _p(request, "app"), parts=request.query_params.get("format") == "json")
    detail["control"] = commands.control(request, detail["app_id"], detail["status"], detail["is_final"],
                                         {k: detail[k] for k in ("commands", "rerun_of", "reruns")})
    detail["history_lines"] = commands.history_lines(detail["history"], detail["commands"])
    return render(request, "invocation.html", f"Invocation {inv_id}", detail, f"/api/v1/invocations/{segment(inv_id)}")


def timeline(request: Request) -> Response:
    keys = ("since", "until", "task", "workflow", "runner", "selected", "limit", "app")
    params = {k: _p(request, k) for k in keys if _p(request, k)}
    opts = reads.timeline_options(request)
    data = {"params": params}
    if request.query_params.get("format") == "json":
        data["timeline"] = _qs(request).timeline(
            app=params.get("app"), since=params.get("since"), until=params.get("until"), task=params.get("task"),
            workflow=params.get("workflow"), runner=params.get("runner"), limit=_int(request, "limit"), **opts)
    api_q = urlencode({**{k: v for k, v in params.items() if k != "selected"},
                       **{k: ",".join(v) if isinstance(v, list) else v for k, v in opts.items() if v is not None}})
    return render(request, "timeline.html", "Timeline", data, "/api/v1/timeline" + ("?" + api_q if api_q else ""),
                  options=opts, resolutions=list(RESOLUTIONS))


def runners(request: Request) -> Response:
    runner_list, live = _qs(request).runners_live(_p(request, "app"))
    return render(request, "runners.html", "Runners", {"runners": runner_list}, "/api/v1/runners", live=live)


def runner(request: Request) -> Response:
    qs, rid = _qs(request), request.path_params["id"]
    data = qs.runner(rid, _p(request, "app"), cursor=_p(request, "cursor"), limit=_int(request, "limit"))
    keep = [(k, v) for k, v in request.query_params.multi_items() if k not in ("cursor", "format")]
    data["next_url"] = (f"/runners/{segment(rid)}?" + urlencode(keep + [("cursor", data["next_cursor"])])
                        if data["next_cursor"] else None)
    data["atomic_executions"] = qs.atomic_executions(runner=rid, limit=50)
    data["atomic_decisions"] = qs.atomic_decisions(runner=rid, limit=50)
    return render(request, "runner.html", f"Runner {rid}", data, f"/api/v1/runners/{segment(rid)}")


def atomic_services(request: Request) -> Response:
    qs, app = _qs(request), _p(request, "app")
    runner_id, status, reason = _p(request, "runner"), _p(request, "status"), _p(request, "reason")
    executions = qs.atomic_executions(app=app, runner=runner_id, status=status, since=_p(request, "since"),
                                      until=_p(request, "until"), limit=PAGE, cursor=_p(request, "exec_cursor"))
    decisions = qs.atomic_decisions(app=app, runner=runner_id, reason=reason, since=_p(request, "since"),
                                    until=_p(request, "until"), limit=PAGE, cursor=_p(request, "dec_cursor"))
    nexts = {name: (str(request.url.include_query_params(**{name: c})) if c else None) for name, c in (
        ("exec_cursor", qs.atomic_next_cursor(executions, PAGE, "executions")),
        ("dec_cursor", qs.atomic_next_cursor(decisions, PAGE, "decisions")))}
    data = {"schedule": qs.atomic_schedule(app), "executions": executions, "decisions": decisions,
            "next_executions": nexts["exec_cursor"], "next_decisions": nexts["dec_cursor"],
            "filters": {"runner": runner_id, "status": status, "reason": reason}}
    return render(request, "atomic.html", "Atomic services", data, "/api/v1/atomic-services/executions")


def events(request: Request) -> Response:
    f = {k: _p(request, k) for k in ("code", "since", "until", "matched", "triggered")}
    data = {"events": _qs(request).events(app=_p(request, "app"), limit=_int(request, "limit") or 200, **f),
            "filters": f}
    return render(request, "events.html", "Events", data, "/api/v1/events")


def event(request: Request) -> Response:
    ev_id = request.path_params["id"]
    return render(request, "event.html", f"Event {ev_id}", _qs(request).event(ev_id), f"/api/v1/events/{segment(ev_id)}")


def trigger_runs(request: Request) -> Response:
    f = {k: _p(request, k) for k in ("task", "since", "until", "event", "invocation")}
    data = {"runs": _qs(request).trigger_runs(app=_p(request, "app"), limit=_int(request, "limit") or 200, **f),
            "filters": f}
    return render(request, "trigger_runs.html", "Trigger runs", data, "/api/v1/trigger-runs")


def trigger_run(request: Request) -> Response:
    run_id = request.path_params["id"]
    return render(request, "trigger_run.html", f"Trigger run {run_id}", _qs(request).trigger_run(run_id),
                  f"/api/v1/trigger-runs/{segment(run_id)}")


def logs_page(request: Request) -> Response:
    from .log_tail import LOG_FILTERS, log_filters

    filters = log_filters(request)
    page = _qs(request).logs(limit=_int(request, "limit") or 200, cursor=_p(request, "cursor"), **filters)
    data = {**page, "filters": filters}
    keep = [(k, v) for k, v in request.query_params.multi_items() if k not in ("cursor", "format")]
    data["next_url"] = "/logs?" + urlencode(keep + [("cursor", page["next_cursor"])]) if page["next_cursor"] else None
    api_q = urlencode({k: v for k, v in filters.items() if v and k in LOG_FILTERS})
    return render(request, "logs.html", "Logs", data, "/api/v1/logs" + ("?" + api_q if api_q else ""))


def log_explorer_page(request: Request) -> Response:
    return render(request, "log_explorer.html", "Log explorer", {}, None)


def runs_page(request: Request) -> Response:
    p = request.query_params
    filters = {"task": _p(request, "task"), "status": p.getlist("status"), "since": _p(request, "since"),
               "until": _p(request, "until"), "sort": _p(request, "sort"), "status_mode": _p(request, "status_mode"),
               "q": _p(request, "q")}
    data, search_error = _searched(request, lambda: _qs(request).runs(
        app=_p(request, "app"), limit=_int(request, "limit") or 200, cursor=_p(request, "cursor"), **filters))
    data["filters"] = {**filters, "status": [s.upper() for v in filters["status"] for s in v.split(",") if s]}
    keep = [(k, v) for k, v in p.multi_items() if k not in ("cursor", "format")]
    data["next_url"] = "/runs?" + urlencode(keep + [("cursor", data["next_cursor"])]) if data["next_cursor"] else None
    actions = commands.row_actions(request, {r["app_id"] for r in data.get("items") or []})
    return _status(render(request, "runs.html", "Runs", data, "/api/v1/runs", search_error=search_error,
                          search_help=SEARCH_HELP, row_actions=actions), search_error)


def ops_page(request: Request) -> Response:
    data = _qs(request).ops_with_writer(_p(request, "app"))
    return render(request, "ops.html", "Ops", data, "/api/v1/ops")


def sql_page(request: Request) -> Response:
    data = {"sql": _p(request, "sql") or "select status, count(*) as invocations from invocations group by 1 order by 2 desc"}
    return render(request, "sql.html", "SQL", data, None)


def trace_page(request: Request) -> Response:
    trace_id = request.path_params["trace_id"]
    data = _qs(request).trace(trace_id)
    spans = []
    for rs in data["resourceSpans"]:
        service = next((a["value"].get("stringValue") for a in rs["resource"]["attributes"]
                        if a["key"] == "service.name"), None)
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                spans.append({**sp, "service": service})
    return render(request, "trace.html", f"Trace {trace_id}", {"trace_id": trace_id, "spans": spans},
                  f"/api/v1/traces/{segment(trace_id)}")


def anomalies_page(request: Request) -> Response:
    from tasktrail.query.anomalies import KINDS
    chosen = [k for k in request.query_params.getlist("kind") if k in KINDS]
    return render(request, "anomalies.html", "Anomalies", reads.anomalies_data(request),
                  _api("/api/v1/anomalies", request, ("app",)), kinds=KINDS, chosen=chosen)


def tasks_page(request: Request) -> Response:
    return render(request, "tasks.html", "Tasks", reads.tasks_data(request),
                  _api("/api/v1/tasks", request, ("app", "since", "until")))


def task_page(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    return render(request, "task.html", f"Task {task_id}", reads.task_data(request),
                  _api(f"/api/v1/tasks/{segment(task_id)}", request, ("app", "since", "until")))


def call_page(request: Request) -> Response:
    call_id = request.path_params["call_id"]
    return render(request, "call.html", f"Call {call_id}", reads.call_data(request),
                  _api(f"/api/v1/calls/{segment(call_id)}", request, ("app", "limit")))


def workflows_page(request: Request) -> Response:
    return render(request, "workflows.html", "Workflows", reads.workflow_types_data(request),
                  _api("/api/v1/workflows", request, ("app", "since", "until")))


WORKFLOW_RUN_FILTERS = ("app", "type", "status", "since", "until", "limit")


def workflow_runs_page(request: Request) -> Response:
    data = reads.workflow_runs_data(request)
    return render(request, "workflow_runs.html", "Workflow runs", data,
                  _api("/api/v1/workflows/runs", request, WORKFLOW_RUN_FILTERS),
                  row_actions=commands.row_actions(request, {r.get("app_id") for r in data["items"]}))


def workflow_type_page(request: Request) -> Response:
    wtype = request.path_params["type"]
    return render(request, "workflow_type.html", f"Workflow {wtype}", reads.workflow_type_data(request),
                  _api(f"/api/v1/workflows/{segment(wtype)}", request,
                       ("app", "status", "limit", "histogram_workflow", "histogram_status", "since", "until")))


def workflow_run_page(request: Request) -> Response:
    wid = request.path_params["id"]
    data = reads.workflow_run_data(request)
    return render(request, "workflow_run.html", f"Workflow run {wid}", data,
                  _api(f"/api/v1/workflows/runs/{segment(wid)}", request, ("app", "histogram_status")),
                  control=commands.workflow_run_control_data(request, wid))  # template-only: the twin is the API's


def workflow_compare_page(request: Request) -> Response:
    data = reads.workflow_compare_data(request)
    return render(request, "workflow_compare.html", f"Comparing {len(data['runs'])} workflow runs", data,
                  _api("/api/v1/workflows/compare", request, ("app", "runs")))


def _api(path: str, request: Request, keep: tuple) -> str:
    """The API twin's URL with the page's own filters."""
    q = [(k, v) for k, v in request.query_params.multi_items() if k in keep and v]
    return path + ("?" + urlencode(q) if q else "")


ROUTES = [
    Route("/", overview),
    Route("/invocations", invocations),
    IdRoute("/invocations/", invocation),
    Route("/timeline", timeline),
    Route("/runners", runners),
    IdRoute("/runners/", runner),
    Route("/atomic-services", atomic_services),
    Route("/events", events),
    IdRoute("/events/", event),
    Route("/trigger-runs", trigger_runs),
    IdRoute("/trigger-runs/", trigger_run),
    Route("/sql", sql_page),
    Route("/logs", logs_page),
    Route("/log-explorer", log_explorer_page),
    Route("/runs", runs_page),
    Route("/ops", ops_page),
    IdRoute("/traces/", trace_page, param="trace_id"),
    Route("/anomalies", anomalies_page),
    Route("/tasks", tasks_page),
    IdRoute("/tasks/", task_page, param="task_id"),
    IdRoute("/calls/", call_page, param="call_id"),
    Route("/workflows", workflows_page),
    Route("/workflows/runs", workflow_runs_page),
    IdRoute("/workflows/runs/", workflow_run_page),
    Route("/workflows/compare", workflow_compare_page),
    IdRoute("/workflows/", workflow_type_page, param="type"),
    Route("/queues", queues_page),
]

__all__ = ["ROUTES", "NotFound"]
