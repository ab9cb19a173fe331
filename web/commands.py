"""Commands over HTTP (issue 19, docs/control.md): abort and re-run requests, their read-back, and the
agents' long-poll. The composition root hands the app a command desk (`app.state.commands`: request,
hand_out, agents, describe; tasktrail/commands.py); the web never appends to the log itself.

Requests pass the API token and cross-site checks like every mutating route (web/app.py); --read-only
refuses them with 403 (and the agents' poll hands out nothing). The agents' poll takes the ingest token
instead of the API token. Any method but POST on an action path answers 405 (`Allow: POST`)."""
from __future__ import annotations

import asyncio
import math
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from tasktrail.proto.bearer import token_ok
from tasktrail.query.commands import ended, reruns_of
from tasktrail.query.errors import BadRequest, NotFound

from .errors import error_response
from .idroutes import IdRoute
from .request_args import _p
from .responses import JSONResponse

AGENT_PATH = "/api/v1/agent/commands"
MAX_WAIT_S = 30.0     # the longest long-poll
POLL_EVERY_S = 0.2    # how often a waiting poll looks for new commands


def _desk(request: Request):
    return request.app.state.commands


def requested_by(request: Request) -> str:
    """Who asks: the token's name ("api", the one API token) when the server has one, else "local"."""
    return "api" if request.app.state.web_settings.api_token else "local"


def _refusal(request: Request):
    """The answer refusing a command request here, or None when it may go on."""
    desk = _desk(request)
    if desk is None:
        return error_response(503, "commands are not available on this node (no command desk)")
    if request.app.state.web_settings.read_only:
        return error_response(403, "this server is read-only (--read-only): abort and re-run are off")
    return None


def _requester(kind: str, target_kind: str):
    async def endpoint(request: Request):
        if request.method != "POST":
            return _post_only(request)
        refused = _refusal(request)
        if refused is not None:
            return refused
        try:
            cmd = await run_in_threadpool(_desk(request).request, kind, target_kind, request.path_params["id"],
                                          requested_by(request), _p(request, "app"))
        except PermissionError as exc:
            return error_response(403, str(exc))
        return JSONResponse(cmd, status_code=202)
    return endpoint


def _post_only(request: Request):
    """Any other method on an action path (GET /invocations/{id}/abort): 405 with `Allow: POST`, in the one
    error shape (without this the bare id route would read "inv-5/abort" as an invocation id: a 404)."""
    return error_response(405, f"{request.method} is not allowed here: ask for a command with POST",
                          {"Allow": "POST"})


def commands(request: Request):
    p = request.query_params
    limit = p.get("limit")
    try:
        limit = int(limit) if limit else None
    except ValueError:
        raise BadRequest(f"limit must be an integer, got {limit!r}") from None
    return JSONResponse(request.app.state.query.commands(
        app=p.get("app") or None, target=p.get("target") or None, state=p.get("state") or None,
        since=p.get("since") or None, until=p.get("until") or None, limit=limit, cursor=p.get("cursor") or None))


def command(request: Request):
    return JSONResponse(request.app.state.query.command(request.path_params["id"]))


async def agent_commands(request: Request):
    """The agents' long-poll: `app`, `runner` (the polling runner context), `wait` (seconds, ≤ 30). Answers
    {commands: [...], poll_again_s} as soon as there are commands, else after `wait`; each command handed
    out is recorded `delivered` to `runner` before this answers (tasktrail/commands.py)."""
    settings = request.app.state.web_settings
    if settings.ingest_token and not token_ok(settings.ingest_token, request.headers.get("authorization")):
        return error_response(401, "missing or wrong ingest token (Authorization: Bearer <token>)",
                              {"WWW-Authenticate": "Bearer"})
    desk = _desk(request)
    if desk is None:
        return error_response(503, "commands are not available on this node (no command desk)")
    p = request.query_params
    app, runner = p.get("app") or "", p.get("runner") or ""
    try:
        wait = float(p.get("wait") or 0)
    except ValueError:
        wait = float("nan")
    if math.isnan(wait) or wait < 0:
        raise BadRequest(f"wait must be a number of seconds from 0 to {MAX_WAIT_S:g}, got {p.get('wait')!r}")
    wait = min(MAX_WAIT_S, wait)
    if settings.read_only:   # --read-only: nothing handed out, nothing appended (docs/control.md)
        await asyncio.sleep(wait)
        return JSONResponse({"commands": [], "poll_again_s": 1.0})
    deadline = time.monotonic() + wait
    while True:
        got = await run_in_threadpool(desk.hand_out, app, runner)
        if got or time.monotonic() >= deadline or await request.is_disconnected():
            return JSONResponse({"commands": got, "poll_again_s": 0 if got else 1.0})
        await asyncio.sleep(POLL_EVERY_S)


def control(request: Request, app_id, status, is_final: bool, commands_of: dict) -> dict:
    """What an invocation or workflow run page shows of commands: {commands, rerun_of, reruns, agents,
    read_only, abort (shown), rerun (shown), why (the reason none is shown)}."""
    agents, why = _agents(request, app_id)
    over = ended(status, is_final)
    return {**commands_of, "agents": agents, "read_only": request.app.state.web_settings.read_only,
            "abort": why is None and not over, "rerun": why is None and over, "why": why}


def _agents(request: Request, app_id) -> tuple[list, str | None]:
    """(the app's agents seen, why nothing can be asked of it here: None when something can)."""
    desk = _desk(request)
    agents = desk.agents(app_id) if desk is not None else []
    why = ("read-only server" if request.app.state.web_settings.read_only else "no command desk on this node"
           if desk is None else None if agents else f"no agent of app {app_id!r} polled in the last 30 s")
    return agents, why


def row_actions(request: Request, apps) -> dict:
    """Which apps' rows in a runs table get the row menu (Abort / Re-run): {app_id: True} for each of `apps`
    whose agent polled within the last 30 s; empty under --read-only or on a node without a command desk
    (the menu is not drawn then)."""
    return {a: True for a in apps if a and _agents(request, a)[1] is None}


def history_lines(history: list[dict], cmds: list[dict]) -> list[dict]:
    """An invocation's status history with the records of the commands aimed at it in line, by time: each
    command record as {timestamp, state, runner_id, reason, new_invocation_id, command: {command_id, kind}}."""
    lines = [{**r, "command": {"command_id": c["command_id"], "kind": c["kind"]}}
             for c in cmds for r in c.get("records", [])]
    return sorted(history + lines, key=lambda h: h["timestamp"] or "")


def invocation_control(request: Request):
    """GET /api/v1/invocations/{id}/control: the page's command panel as JSON (polled for live progress)."""
    qs, app = request.app.state.query, _p(request, "app")
    inv = qs.invocation(request.path_params["id"], app)
    return JSONResponse(control(request, inv["app_id"], inv["status"], inv["is_final"],
                                qs.invocation_commands(inv["invocation_id"], app)))


def workflow_run_control_data(request: Request, run_id: str) -> dict:
    """What a workflow run page shows of commands: as `control`, over the commands aimed at the run; abort
    while a member is unfinished, re-run once its root is over. Raises NotFound for an unknown run."""
    qs, app = request.app.state.query, _p(request, "app")
    members = qs.invocations(workflow=run_id, app=app, since="all", limit=1000)["items"]
    if not members:
        raise NotFound(f"no workflow run {run_id!r}")
    root = next((m for m in members if m["invocation_id"] == run_id), None)
    open_ = any(not ended(m["status"], m["is_final"]) for m in members)
    cmds = qs.commands(target=run_id, app=app, limit=200)["items"]
    out = control(request, members[0]["app_id"], None, not open_, {"commands": cmds, "rerun_of": None,
                                                                   "reruns": reruns_of(cmds)})
    out["rerun"] = out["rerun"] and root is not None and ended(root["status"], root["is_final"])
    return out


def workflow_run_control(request: Request):
    """GET /api/v1/workflows/runs/{id}/control: the run page's command panel as JSON."""
    return JSONResponse(workflow_run_control_data(request, request.path_params["id"]))


# An action path takes every method, so that another than POST meets its 405 here and never reads as an id
# holding "/abort" on the detail routes.
_ANY = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ROUTES = [
    IdRoute("/invocations/", _requester("abort", "invocation"), suffix="abort", methods=_ANY),
    IdRoute("/invocations/", _requester("rerun", "invocation"), suffix="rerun", methods=_ANY),
    IdRoute("/invocations/", invocation_control, suffix="control"),
    IdRoute("/workflows/runs/", _requester("abort", "workflow_run"), suffix="abort", methods=_ANY),
    IdRoute("/workflows/runs/", _requester("rerun", "workflow_run"), suffix="rerun", methods=_ANY),
    IdRoute("/workflows/runs/", workflow_run_control, suffix="control"),
    Route("/commands", commands),
    IdRoute("/commands/", command),
    Route("/agent/commands", agent_commands),
]
