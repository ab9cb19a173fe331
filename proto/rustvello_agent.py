"""The rustvello agent (issue 19, docs/control.md): attach it to a `rustvello.App` with one call and it carries
out tasktrail's commands for that app, in that process, through rustvello's own API.

    from tasktrail.proto.rustvello_agent import attach
    agent = attach(app, "http://tasktrail:8000", otlp_endpoint="http://tasktrail:4318", token=INGEST_TOKEN)
    ...
    agent.stop()

It long-polls `GET /api/v1/agent/commands?app=&runner=&wait=` (the ingest token as bearer) and reports
each outcome as a tasktrail.v1 `tasktrail.command` record over OTLP (proto/emitter.py):
- abort: `App.cancel` on each unfinished invocation the command names. rustvello: queued or backing-off
  invocations never run; a running `async def` body is cancelled at its next await, a synchronous one keeps
  running in its thread and its result is discarded. done ("cancelled N") when one was cancelled, refused
  ("already finished") when none was.
- rerun: the original task and its exact arguments, read from rustvello's own state backend (the call it
  stored: OTLP carries no arguments from rustvello, and a preview is not the arguments), submitted again
  through the app; done with the new invocation's id. refused with the reason when the call is not there
  (another backend, purged) or the submission fails.
Resuming after its own restart: tasktrail hands a command out once, to one runner context, and never again; an
agent that dies after taking a command leaves it to expire. With `journal=PATH` the agent writes each outcome
there before reporting it and, when it starts again, reports every outcome in the journal again (tasktrail
counts the first report after delivery, so a repeat counts once), so an outcome reached but not yet sent is
not lost.
"""
from __future__ import annotations

import json
import os
import socket
import uuid
from typing import Any, Optional

from .command_agent import CommandAgent
from .emitter import Emitter, Runner


class RustvelloAgent(CommandAgent):
    """Polls tasktrail for one rustvello app's commands in a daemon thread and carries them out
    (the poll, reports and journal: proto/command_agent.py)."""

    def __init__(self, app, web_url: str, *, otlp_endpoint: str, token: Optional[str] = None,
                 runner_id: Optional[str] = None, wait_s: float = 10.0, journal: Optional[str] = None,
                 emitter: Optional[Emitter] = None) -> None:
        self.app = app
        runner = Runner(runner_id or f"agent-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
                        "RustvelloAgent", hostname=socket.gethostname(), pid=os.getpid())
        emitter = emitter or Emitter(otlp_endpoint, _app_id(app), protocol="http/protobuf", token=token,
                                     service_name="tasktrail-agent")
        super().__init__(_app_id(app), web_url, emitter=emitter, runner=runner, token=token, wait_s=wait_s,
                         journal=journal)

    # --- what rustvello can do -------------------------------------------------------------------------------
    def _abort(self, cmd: dict) -> dict:
        ids = cmd.get("parameters", {}).get("invocations") or [cmd["target"]]
        cancelled = [i for i in ids if self.app.cancel(_inv_id(i))]
        if not cancelled:
            return {"state": "refused", "reason": "already finished: nothing to cancel"}
        for inv_id in cancelled:
            self._report_cancelled(inv_id, cmd["command_id"])
        return {"state": "done", "reason": f"cancelled {len(cancelled)} of {len(ids)} through App.cancel "
                                           "(running synchronous work runs on; its result is discarded)"}

    def _report_cancelled(self, invocation_id: str, command_id: str, timeout_s: float = 10.0) -> None:
        """rustvello 0.9 sends no lifecycle event for a cancellation: once rustvello says CANCELLED, the
        agent reports it as tasktrail.v1 status KILLED (the canonical status of aborted work)."""
        import time
        deadline = time.monotonic() + timeout_s
        status = None
        while time.monotonic() < deadline:
            status = str(self.app._engine.get_status(_inv_id(invocation_id))).rsplit(".", 1)[-1].upper()
            if status == "CANCELLED":
                break
            time.sleep(0.05)
        if status == "CANCELLED":
            self.emitter.status(invocation_id, "KILLED", runner=self.runner, error_type="InvocationCancelled",
                                error_message=f"cancelled by tasktrail command {command_id} (App.cancel)")

    def _rerun(self, cmd: dict) -> dict:
        task_key, kwargs = self.call_of(cmd["target"])
        if task_key is None:
            return {"state": "refused", "reason": f"arguments not known exactly: {kwargs}"}
        language, _, name = task_key.partition("::")
        new = self.app.send_task(name, kwargs, language=language)
        return {"state": "done", "new_invocation_id": str(new.id), "reason": f"re-ran {name} with its stored arguments"}

    def call_of(self, invocation_id: str) -> tuple[Optional[str], Any]:
        """(task key `language::module.name`, the exact keyword arguments) rustvello stored for an invocation,
        or (None, why not). Reads the state backend the way `App.current_invocation` does."""
        try:
            state = self.app._backend_objects["state_backend"]
            inv = json.loads(state.get_invocation(invocation_id))
            task = inv["task_id"]
            key = f"{task.get('language', 'python')}::{task['module']}.{task['name']}"
            call = json.loads(state.get_call(f"{key}:{inv['call_id']['args_id']}"))
            return key, {k: json.loads(v) for k, v in call.get("serialized_arguments", {}).items()}
        except Exception as exc:
            return None, f"rustvello's state backend has no call for {invocation_id!r} ({type(exc).__name__}: {exc})"


def _app_id(app) -> str:
    """A rustvello.App's id (0.9 keeps it as `_app_id`)."""
    return getattr(app, "app_id", None) or app._app_id


def _inv_id(invocation_id: str):
    import rustvello
    return rustvello.InvocationId.from_string(invocation_id) if hasattr(rustvello, "InvocationId") else invocation_id


def attach(app, web_url: str, *, otlp_endpoint: str, token: Optional[str] = None, **kw) -> RustvelloAgent:
    """Start an agent for `app` (a rustvello.App) against tasktrail's web address `web_url`; see the module."""
    return RustvelloAgent(app, web_url, otlp_endpoint=otlp_endpoint, token=token, **kw).start()
