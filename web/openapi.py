"""The OpenAPI 3.0 description of /api/v1, served at /api/v1/openapi.json.

Written here beside the routes (web/api.py) rather than generated: the routes read query parameters
by hand, and a test (tests/test_openapi.py) checks that every route is described and that
schemathesis, driving the live server from this description, never gets a 5xx.
"""
from __future__ import annotations

from tasktrail import __version__


def _q(name: str, desc: str, kind: str = "string", **extra) -> dict:
    return {"name": name, "in": "query", "required": False, "description": desc, "schema": {"type": kind, **extra}}


def _path(name: str, desc: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": desc, "schema": {"type": "string"}}


APP = _q("app", "Only this app.")
SINCE = _q("since", "RFC 3339 time, or relative like -1h.")
UNTIL = _q("until", "RFC 3339 time, or relative like -10m.")
LIMIT = _q("limit", "Most items to return.", "integer")
CURSOR = _q("cursor", "The next_cursor of the previous page.")
STATUS_LIST = {"name": "status", "in": "query", "required": False, "style": "form", "explode": True,
               "description": "Statuses (repeat, or comma-separated).",
               "schema": {"type": "array", "items": {"type": "string"}}}
STATUS_MODE = _q("status_mode", "current (default): the status each invocation is in now; history: a status it "
                               "ever had since `since` (e.g. ever RETRY).")
LOG_FILTERS = [APP, _q("q", "Literal text, any case."), _q("level", "At least this level (INFO, WARN, ...)."),
               _q("runner", "Runner or worker id."), _q("worker", "Worker id."), _q("invocation", "Invocation id."),
               _q("task", "Task id."), SINCE, UNTIL]
SUMMARY_SINCE = _q("since", "RFC 3339 time, relative like -7d, or `all`; default the last 24 h.")
ID = _path("id", "The id as one path segment: percent-encoded, `/` as %2F; an id of dots only as ~2E per dot.")
HISTOGRAM_STATUS = {"name": "histogram_status", "in": "query", "required": False, "style": "form", "explode": True,
                    "description": "Occupancy categories counted: registered, pending, running (default: pending, "
                                   "running).", "schema": {"type": "array", "items": {"type": "string"}}}

# The timeline's options (query/timeline_options.py), pynmon's names.
TIMELINE_OPTIONS = [
    _q("resolution", "The time grid: axis ticks and occupancy buckets.", enum=[
        "auto", "100ms", "250ms", "500ms", "1s", "5s", "10s", "30s", "1m", "5m", "15m", "30m", "1h"]),
    _q("show_system", "0 hides system tasks (pynenc.core_tasks.*, <package>.core_tasks.*, celery.*).",
       enum=["0", "1"]),
    _q("show_atomic_service", "0 leaves out the atomic-service lane.", enum=["0", "1"]),
    _q("fit", "1 (default): the occupancy covers the data's span; 0: the whole window.", enum=["0", "1"]),
    HISTOGRAM_STATUS]


def _get(summary: str, params: list, result: str = "object", stream: bool = False) -> dict:
    ok = ({"text/event-stream": {"schema": {"type": "string"}}} if stream
          else {"application/json": {"schema": {"type": result}}})
    return {"get": {"summary": summary, "parameters": params, "responses": {
        "200": {"description": "OK", "content": ok},
        "400": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
        "504": {"$ref": "#/components/responses/Error"}}}}


def _download(summary: str, params: list) -> dict:
    """A route answering a whole value as an attachment (text/plain or application/json)."""
    ok = {"text/plain": {"schema": {"type": "string"}}, "application/json": {"schema": {}}}
    return {"get": {"summary": summary, "parameters": params, "responses": {
        "200": {"description": "The whole value, as an attachment with Content-Length", "content": ok},
        "400": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
        "504": {"$ref": "#/components/responses/Error"}}}}


def _post(summary: str, body: dict) -> dict:
    return {"post": {"summary": summary, "requestBody": {"required": True, "content": {"application/json": {
        "schema": body}}}, "responses": {
        "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
        "400": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}}}

# The search of the invocations list and the runs table (query/search.py, docs/api.md).
SEARCH = _q("q", "Search: ids, task names, arguments, result, error; prefixes args:, kwargs:KEY=VALUE, result:, "
            "error:, state:, name:; quoted phrases; terms ANDed, OR and parentheses. Values are read in the "
            "window (default the last 24 h; since=all for all).")


def _action(summary: str) -> dict:
    """A command request (issue 19): no body, 202 with the command once it is in the log."""
    return {"post": {"summary": summary, "parameters": [ID], "responses": {
        "202": {"description": "Requested: {command_id, state, kind, target} (the command is durable in the log)",
                "content": {"application/json": {"schema": {"type": "object"}}}},
        "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
        "409": {"$ref": "#/components/responses/Error"}}}}


# issue 19: commands (web/commands.py, docs/control.md)
COMMAND_PATHS = {
    "/invocations/{id}/abort": _action("Abort an unfinished invocation: a command its app's agent carries out."),
    "/invocations/{id}/rerun": _action("Re-run a finished invocation with its task and arguments (its app's agent)."),
    "/invocations/{id}/control": _get("What the invocation page shows of commands: {commands, rerun_of, reruns, "
                                      "agents, read_only, abort, rerun, why}.", [ID]),
    "/workflows/runs/{id}/abort": _action("Abort a workflow run's unfinished members."),
    "/workflows/runs/{id}/rerun": _action("Re-run a finished workflow run's root."),
    "/workflows/runs/{id}/control": _get("What the workflow run page shows of commands (as for an invocation).",
                                         [ID]),
    "/commands": _get("Commands, newest requested first: {items, next_cursor}.", [
        APP, _q("target", "Invocation or workflow run id."),
        _q("state", "requested, delivered, done, refused or expired."), SINCE, UNTIL, LIMIT, CURSOR]),
    "/commands/{id}": _get("One command with every record of its life (`records`).", [ID]),
    "/agent/commands": _get("Agents' long-poll (the ingest token as bearer): the app's requested commands, each "
                            "recorded delivered to `runner` before the answer: {commands, poll_again_s}.", [
        _q("app", "The agent's app."), _q("runner", "The polling runner context."),
        _q("wait", "Seconds to wait for a command (at most 30).", "number", minimum=0, maximum=30)]),
}

PATHS = {
    "/apps": _get("Apps seen, with first and last activity and invocation counts.", [], "array"),
    "/invocations": _get("Invocations, filtered, sorted and paginated.", [
        APP, STATUS_LIST, _q("task", "Task id."), _q("runner", "Ran on this runner or worker."),
        _q("workflow", "Workflow id."), _q("parent", "Parent invocation id."), SINCE, UNTIL,
        SEARCH, LIMIT, CURSOR,
        _q("sort", "created_at, -created_at, updated_at, -updated_at."), STATUS_MODE]),
    "/invocations/{id}": _get("One invocation: status, attempts, arguments, result, error, trace links. "
                              "Arguments, result, error message and traceback are previews (the first "
                              "--preview-bytes / --traceback-preview-bytes, cut on a character); `values` "
                              "describes each: {bytes, preview_bytes, truncated, url}, url downloading it whole.",
                              [ID, APP]),
    "/invocations/{id}/values/{name}": _download(
        "The whole value a detail previews, as stored: application/json (arguments or result sent as JSON) or "
        "text/plain, as an attachment.",
        [ID, {"name": "name", "in": "path", "required": True, "description": "Which value.",
              "schema": {"type": "string", "enum": ["arguments", "result", "error_message", "error_traceback"]}},
         APP]),
    "/invocations/{id}/history": _get("Its status history, oldest first; each record with the class, host, pid "
                                      "and thread of the runner context that made it; with commands=true the "
                                      "records of the commands aimed at it in line (each with `command`: "
                                      "{command_id, kind}).",
                                      [ID, APP, _q("commands", "true: the command records in line.", "boolean")],
                                      "array"),
    "/invocations/{id}/family": _get("Its family tree: root, nodes, edges.", [ID, APP]),
    "/invocations/{id}/logs": _get("Its log lines, oldest first.", [ID, LIMIT], "array"),
    "/runners": _get("Runner contexts, alive or not.", [APP], "array"),
    "/runners/{id}": _get("One runner: context, workers, heartbeats, what it runs, a page of its activity "
                          "(recent_activity, next_cursor), its reported settings (settings, settings_reported_at) "
                          "and its app's configuration (app_config).", [ID, APP, LIMIT, CURSOR]),
    "/atomic-services/executions": _get("Atomic-service executions, newest first; a Link header (rel=\"next\") "
                                        "names the next page.", [
        APP, SINCE, UNTIL, _q("runner", "Runner id."), _q("status", "Status."), LIMIT,
        _q("cursor", "The next page, from the Link header of the page before.")], "array"),
    "/atomic-services/decisions": _get("Atomic-service claim decisions, newest first; a Link header "
                                       "(rel=\"next\") names the next page.", [
        APP, SINCE, UNTIL, _q("runner", "Runner id."), _q("reason", "Decision reason."), LIMIT,
        _q("cursor", "The next page, from the Link header of the page before.")], "array"),
    "/atomic-services/schedule": _get("The current cycle's slots as the runners saw them.", [APP]),
    "/events": _get("Events.", [APP, _q("code", "Event code."), SINCE, UNTIL, _q("matched", "true/false."),
                                _q("triggered", "true/false."), LIMIT], "array"),
    "/events/markers": _get("Event markers for a timeline window.", [
        APP, SINCE, UNTIL, _q("code", "Event code."), _q("state", "matched, unmatched."), LIMIT]),
    "/events/{id}": _get("One event with what it matched and triggered.", [ID]),
    "/trigger-runs": _get("Trigger runs, newest first.", [
        APP, SINCE, UNTIL, _q("task", "Task id."), _q("event", "Event id."), _q("invocation", "Invocation id."),
        LIMIT], "array"),
    "/trigger-runs/{id}": _get("One trigger run.", [ID]),
    "/timeline": _get("Lanes, sub-lanes, segments and points of a time window.", [
        APP, SINCE, UNTIL, _q("task", "Task id."), _q("workflow", "Workflow id."), _q("runner", "Runner id."),
        _q("invocations", "Comma-separated invocation ids."), LIMIT] + TIMELINE_OPTIONS),
    "/traces/{trace_id}": _get("A trace's spans as OTLP/JSON.", [_path("trace_id", "32 hex characters.")]),
    "/anomalies": _get("Orphaned, stuck and slow invocations, failure spikes, silent runners; each says why.",
                       [APP]),
    "/tasks": _get("Every known task: counts by status, success rate, duration p50/p95/p99, throughput in the "
                   "window (zero for one idle in it) and its last run ever.",
                   [APP, SUMMARY_SINCE, UNTIL]),
    "/tasks/{task_id}": _get("One task: its figures, a duration and throughput series over time, error types with "
                             "their latest example, recent calls and invocations, its reported definition (definition).",
                             [_path("task_id", "The task id."), APP, SUMMARY_SINCE, UNTIL]),
    "/calls/{call_id}": _get("One call (a task and its arguments, as the runner named it: pynenc's call id) and "
                             "its invocations, newest first, with status, created and duration.",
                             [_path("call_id", "The call id, percent-encoded."), APP, LIMIT]),
    "/workflows": _get("Every known workflow type: runs, statuses, duration p50/p95, members in the window "
                       "(zero for one idle in it) and its last run ever.", [APP, SUMMARY_SINCE, UNTIL]),
    "/workflows/runs": _get("Workflow runs, newest first, with status, duration, members, parent workflow, rerun_of.", [
        APP, _q("type", "Workflow type."), STATUS_LIST, SINCE, UNTIL, LIMIT]),
    "/workflows/runs/{id}": _get("One run: members with time per status, sub-workflows, occupancy histogram.", [
        ID, APP, HISTOGRAM_STATUS]),
    "/workflows/compare": _get("Up to 10 runs side by side: member tasks per run, time per status, where the "
                               "slowest lost its time.", [
        {"name": "runs", "in": "query", "required": True, "style": "form", "explode": True,
         "description": "1 to 10 workflow ids (repeat, or comma-separated).",
         "schema": {"type": "array", "items": {"type": "string"}, "minItems": 1}}, APP]),
    "/workflows/{type}": _get("One workflow type: its runs and the occupancy histograms of the latest 3 (or chosen) "
                              "runs.", [_path("type", "The workflow type."), APP, STATUS_LIST, LIMIT,
                                        {"name": "histogram_workflow", "in": "query", "required": False,
                                         "style": "form", "explode": True,
                                         "description": "Runs to draw histograms for (up to 10).",
                                         "schema": {"type": "array", "items": {"type": "string"}}},
                                        HISTOGRAM_STATUS, SUMMARY_SINCE, UNTIL]),
    "/overview": _get("Counts by status, in flight, runners alive, last ingest, apps (each with its "
                      "reported configuration: config).", [APP]),
    "/logs": _get("Log lines, newest first. `message` is a preview of the body (the first --preview-bytes); "
                  "`values.message` says {bytes, preview_bytes, truncated, url}, url downloading a cut body whole.",
                  LOG_FILTERS + [LIMIT, CURSOR]),
    "/logs/{key}/body": _download("The whole body of a log line whose preview was cut (its values.message.url).",
                                  [_path("key", "<batch>.<epoch micros>.<md5 of the body>, from the url.")]),
    "/logs/tail": _get("Server-Sent Events: new log lines as they are committed.", [
        p for p in LOG_FILTERS if p["name"] != "until"] + [_q("after", "Resume after this batch.", "integer"),
                                                           _q("backfill", "First send the last N lines.", "integer")],
                       stream=True),
    "/log-explorer": _post("Resolve pasted pynenc / rustvello / tasktrail log lines against the store.", {
        "type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}),
    "/runs": _get("Runs: started newest first with live duration, how each was started (started_by) and rerun_of.", [
        APP, _q("task", "Task id."), STATUS_LIST, SINCE, UNTIL, _q("sort", "Sort key."), LIMIT, CURSOR,
        STATUS_MODE, SEARCH]),
    "/ops": _get("In flight, recent failures, heartbeats, scheduler, ingest figures.", [APP]),
    "/sql": _post("One read-only SELECT over the log (time limit and row cap apply).", {
        "type": "object", "required": ["sql"], "properties": {"sql": {"type": "string"}}}),
    **COMMAND_PATHS,
}

QUEUES_SINCE = _q("since", "RFC 3339 time, relative like -15m, or `all`; default the last hour.")
PATHS.update({  # issue 18: queue depths (web/queues.py)
    "/queues": _get("Per queue: the latest depth reported in the window (default the last hour), its series, its "
                    "consumers alive now, `unconsumed` when messages wait and nobody consumes it.",
                    [APP, QUEUES_SINCE, UNTIL]),
    "/queues/{name}": _get("One queue: its depth, series and consumers over the window (404 when nothing names it "
                           "there; 400 when several apps have it and no app is given).",
                           [_path("name", "The queue name."), APP, QUEUES_SINCE, UNTIL]),
})


def spec() -> dict:
    return {
        "openapi": "3.0.3",
        "info": {"title": "tasktrail API", "version": __version__,
                 "description": "Read API over tasktrail's log. Errors share one shape: "
                                "{\"error\": {\"status\": N, \"message\": \"...\"}}."},
        "servers": [{"url": "/api/v1"}],
        "paths": PATHS,
        "components": {
            "responses": {"Error": {"description": "An error", "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/Error"}}}}},
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["status", "message"],
                "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
