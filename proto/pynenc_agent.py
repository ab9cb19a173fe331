"""The pynenc 0.4 agent (issue 19, docs/control.md): tasktrail's abort and re-run carried out by pynenc itself.

Started by the pynenc exporter (proto/pynenc.py) when TASKTRAIL_AGENT is set besides TASKTRAIL_ENDPOINT:
    export TASKTRAIL_AGENT=http://tasktrail:8000   # tasktrail's web address ("on": the endpoint's host, port 8000)
With it, every top-level pynenc runner (`BaseRunner.on_start`: a runner's `run()`, not the workers it spawns
nor a script's ExternalRunner) starts one agent per app and process, stopped with the runner (`on_stop`).
It long-polls `GET /api/v1/agent/commands` with TASKTRAIL_TOKEN (the ingest token) and reports each outcome
as a `tasktrail.command` record through the exporter's emitter (proto/command_agent.py). Its pynenc runner
context (class TasktrailAgent, a child of the runner's) is stored in pynenc's state backend, so the status
changes it makes name it, in pynenc and in tasktrail. pynenc's backends are shared by the app's processes
(SQLite, Redis...), so any agent of the app can act on any of its invocations (with memory backends, only
on its own process's).

What pynenc 0.4.0 offers, and so what the agent does:
- rerun, as Pynmon's rerun route does (pynmon/views/invocations.py `rerun_invocation`): the invocation
  pynenc stored (`app.state_backend.get_invocation(id)`: its call's task and deserialized arguments), routed
  again through `task._call(call.arguments)` (`orchestrator.route_call`); done with the new invocation id.
  refused ("arguments not known exactly") when pynenc's state backend does not hold it (InvocationNotFoundError:
  another backend, purged): tasktrail's arguments are previews, never used.
- abort: pynenc 0.4 has no cancel. Its status machine (pynenc/invocation/status.py `_CONFIG`) lets a
  REGISTERED invocation (routed, not yet taken by a runner) go to CONCURRENCY_CONTROLLED_FINAL, a final
  status ("marked as CONCURRENCY_CONTROLLED_FINAL and never run", conf/config_task.py), with no owner to
  check; the agent makes that transition through `orchestrator.set_invocation_status` (atomic: SQLite's
  `_atomic_status_transition` runs under BEGIN IMMEDIATE, so a runner taking it at the same moment wins or
  loses whole). A runner that later retrieves its id from the broker drops it: `get_additional_invocations_to_run`
  runs only `is_available_for_run()` statuses. Every other unfinished status is refused, with pynenc's reason:
  PENDING and RUNNING (and PAUSED) belong to the runner that owns them (`requires_ownership`); KILLED is not
  final in pynenc (KILLED -> REROUTED: `BaseRunner._kill_and_reroute` is how a stopping runner puts work back
  to run again) and nothing interrupts a running task body; REROUTED, RETRY, CONCURRENCY_CONTROLLED and the
  recovery statuses have no final status among their transitions. pynenc reports the transition itself (the
  exporter sends it, by the agent's context), so the agent sends no KILLED of its own.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import urllib.parse
import uuid
from typing import Optional

from .command_agent import CommandAgent
from .emitter import Emitter, Runner

log = logging.getLogger("tasktrail.pynenc")
ENV_AGENT = "TASKTRAIL_AGENT"
DEFAULT_WEB_PORT = 8000   # `tasktrail serve --http-port`'s default
AGENT_CLASS = "TasktrailAgent"
ABORT_STATUS = "CONCURRENCY_CONTROLLED_FINAL"


def agent_url(setting: Optional[str], endpoint: Optional[str]) -> Optional[str]:
    """tasktrail's web address from TASKTRAIL_AGENT (`setting`): a URL as given; "on"/"true"/"1": the host of
    the OTLP `endpoint` (TASKTRAIL_ENDPOINT) on port 8000; None when unset or "off". Raises ValueError for
    "on" without an endpoint or for a value that is neither a switch nor an http(s) URL."""
    value = (setting or "").strip()
    if value.lower() in ("", "0", "off", "false", "no"):
        return None
    if value.lower() in ("1", "on", "true", "yes"):
        host = urllib.parse.urlsplit(endpoint if "//" in (endpoint or "") else f"//{endpoint or ''}").hostname
        if not host:
            raise ValueError(f"{ENV_AGENT}={value} derives tasktrail's address from TASKTRAIL_ENDPOINT, which is unset")
        return f"http://{host if ':' not in host else f'[{host}]'}:{DEFAULT_WEB_PORT}"
    if urllib.parse.urlsplit(value).scheme not in ("http", "https"):
        raise ValueError(f"{ENV_AGENT} must be tasktrail's web address (http://host:port) or on/off, not {value!r}")
    return value.rstrip("/")


class PynencAgent(CommandAgent):
    """One pynenc app's agent in this process (see the module): acts through the app's own orchestrator and
    state backend, as the pynenc runner context `ctx` (class TasktrailAgent)."""

    def __init__(self, app, web_url: str, *, emitter: Emitter, token: Optional[str] = None, parent_ctx=None,
                 wait_s: float = 10.0, journal: Optional[str] = None) -> None:
        from pynenc.runner.runner_context import RunnerContext
        self.app = app
        host, pid = socket.gethostname(), os.getpid()
        self.ctx = RunnerContext(runner_cls=AGENT_CLASS, runner_id=f"{AGENT_CLASS}@{host}-{pid}-{uuid.uuid4().hex[:6]}",
                                 parent_ctx=parent_ctx)
        runner = Runner(self.ctx.runner_id, AGENT_CLASS, parent_id=parent_ctx.runner_id if parent_ctx else None,
                        hostname=host, pid=pid, thread_id=self.ctx.thread_id)
        super().__init__(app.app_id, web_url, emitter=emitter, runner=runner, token=token, wait_s=wait_s,
                         journal=journal)

    def start(self) -> "PynencAgent":
        """Store the agent's runner context in pynenc's state backend, then poll (proto/command_agent.py)."""
        self.app.state_backend.store_runner_context(self.ctx)
        super().start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop polling; the agent's context is reported stopped."""
        super().stop(timeout)
        self.emitter.runner_stopped(self.runner)
        self.emitter.flush()

    # --- rerun ----------------------------------------------------------------------------------------------
    def _rerun(self, cmd: dict) -> dict:
        from pynenc.exceptions import InvocationNotFoundError
        try:
            stored = self.app.state_backend.get_invocation(cmd["target"])
            task, arguments = stored.task, stored.call.arguments
        except InvocationNotFoundError as exc:
            return {"state": "refused", "reason": f"arguments not known exactly: pynenc's state backend has no "
                                                  f"invocation {cmd['target']!r} ({exc})"}
        new = task._call(arguments)   # what Pynmon's rerun does: a new invocation of the same call
        new_id = str(new.invocation_id)
        if new_id == cmd["target"]:
            return {"state": "refused", "reason": "pynenc routed the call to the original invocation again"}
        return {"state": "done", "new_invocation_id": new_id,
                "reason": f"re-ran {task.task_id} with the arguments pynenc stored (Task._call, as Pynmon's rerun)"}

    # --- abort ----------------------------------------------------------------------------------------------
    def _abort(self, cmd: dict) -> dict:
        ids = cmd.get("parameters", {}).get("invocations") or [cmd["target"]]
        stopped, refusals = [], []
        for inv_id in ids:
            why = self.stop_queued(inv_id)
            if why is None:
                stopped.append(inv_id)
            else:
                refusals.append(why if len(ids) == 1 else f"{inv_id}: {why}")
        if not stopped:
            return {"state": "refused", "reason": "; ".join(refusals)}
        reason = (f"{len(stopped)} of {len(ids)} set {ABORT_STATUS} before any runner took it "
                  "(pynenc 0.4 has no cancel; that final status never runs)")
        return {"state": "done", "reason": "; ".join([reason, *refusals])}

    def stop_queued(self, invocation_id: str) -> Optional[str]:
        """Move a REGISTERED invocation to CONCURRENCY_CONTROLLED_FINAL through pynenc's orchestrator, so it
        never runs; returns None when done, else why pynenc 0.4 cannot abort it (see the module)."""
        from pynenc.exceptions import InvocationStatusError
        from pynenc.invocation.status import InvocationStatus, get_status_definition
        orchestrator = self.app.orchestrator
        try:
            status = orchestrator.get_invocation_status(invocation_id)
        except Exception as exc:  # KeyError / InvocationNotFoundError: not in this app's orchestrator
            return f"pynenc's orchestrator does not hold it ({type(exc).__name__}: {exc})"
        if status != InvocationStatus.REGISTERED:
            return _cannot(status, get_status_definition(status))
        try:
            orchestrator.set_invocation_status(invocation_id, InvocationStatus(ABORT_STATUS.lower()), self.ctx)
        except InvocationStatusError as exc:   # a runner took it between the read and the transition
            return f"a runner took it first: {exc}"
        return None


def _cannot(status, definition) -> str:
    """Why pynenc 0.4 cannot abort an invocation in `status` (its StatusDefinition `definition`)."""
    name = status.name
    if status.is_final():
        return f"already finished ({name})"
    if name in ("RUNNING", "PAUSED"):
        return (f"{name}: pynenc 0.4 cannot stop running work (it has no cancel; only the runner that owns it "
                "may change its status, and its KILLED is not final: a stopping runner reroutes it to run again)")
    if definition.requires_ownership:
        return f"{name}: taken by a runner; pynenc 0.4 lets only the runner that owns it change its status"
    allowed = ", ".join(sorted(s.name for s in definition.allowed_transitions)) or "none"
    return f"{name}: pynenc 0.4's status machine leads it only to {allowed}, no final status that stops it"


_agents: dict = {}
_lock = threading.Lock()


def install(ex) -> None:
    """With TASKTRAIL_AGENT set (see agent_url), start a PynencAgent beside each top-level runner's `run()`
    and stop it with the runner; `ex` is the exporter (proto/pynenc.Exporter: its emitter and token)."""
    try:
        url = agent_url(os.environ.get(ENV_AGENT), ex.endpoint)
    except ValueError as exc:  # a wrong setting is said clearly; it does not stop the app
        log.error("tasktrail agent not started: %s", exc)
        return
    if url is None:
        return
    from pynenc.runner.base_runner import BaseRunner

    from .pynenc_hooks import after

    def started(runner) -> None:
        ctx = runner.runner_context
        if getattr(ctx, "parent_ctx", None) is not None or not getattr(runner, "running", False):
            return
        key = (runner.app.app_id, os.getpid())
        with _lock:
            if key not in _agents:
                _agents[key] = (runner, PynencAgent(runner.app, url, emitter=ex.emitter(runner.app),
                                                    token=ex.token, parent_ctx=ctx).start())

    def stopped(runner) -> None:
        key = (runner.app.app_id, os.getpid())
        with _lock:
            owner, agent = _agents.get(key, (None, None))
            if owner is runner:
                del _agents[key]
        if owner is runner:
            agent.stop(timeout=2.0)   # a poll under way is left to its daemon thread

    after(BaseRunner, "on_start", started, mark="__tasktrail_agent__")
    after(BaseRunner, "on_stop", stopped, mark="__tasktrail_agent__")
