"""What every tasktrail agent does whatever its runner (docs/control.md, "The agent protocol"): long-poll
`GET /api/v1/agent/commands?app=&runner=&wait=` with the ingest token, hand each command to the runner's
own code (a subclass's `_abort` / `_rerun`), and report each outcome as a tasktrail.v1 `tasktrail.command`
record over OTLP (proto/emitter.py), as the runner context the command was delivered to.

Once at most: tasktrail hands a command out once, to one runner context. With `journal=PATH` an agent writes
each outcome there (fsync'd) before reporting it and, when it starts again, reports every outcome in the
journal again (tasktrail counts the first report after delivery, so a repeat counts once): an outcome reached
but not sent is not lost. The runner-specific agents: proto/rustvello_agent.py, proto/pynenc_agent.py.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import urllib.parse
import urllib.request
from typing import Optional

from .bearer import bearer
from .emitter import Emitter, Runner

log = logging.getLogger("tasktrail.agent")


class CommandAgent:
    """Polls tasktrail for one app's commands in a daemon thread and carries them out (subclasses act)."""

    def __init__(self, app_id: str, web_url: str, *, emitter: Emitter, runner: Runner,
                 token: Optional[str] = None, wait_s: float = 10.0, journal: Optional[str] = None) -> None:
        self._app_id, self.web_url, self.token, self.wait_s = app_id, web_url.rstrip("/"), token, wait_s
        self.runner, self.emitter, self.journal = runner, emitter, journal
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tasktrail-agent", daemon=True)
        self.handled: list[dict] = []   # outcomes, in order (for the app and tests)

    @property
    def app_id(self) -> str:
        return self._app_id

    def start(self) -> "CommandAgent":
        """Re-send the journal's outcomes, then poll in a daemon thread; returns the agent."""
        self._replay_journal()
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop polling (after the poll under way answers, at most `wait_s`) and flush the reports."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.emitter.flush()

    # --- the loop ----------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                commands = self.poll()
            except Exception as exc:  # tasktrail away: try again shortly
                log.warning("tasktrail agent: poll failed: %s", exc)
                self._stop.wait(1.0)
                continue
            for cmd in commands:
                self.handle(cmd)

    def poll(self) -> list[dict]:
        """One long-poll: the commands tasktrail handed this runner context (recorded `delivered` to it).
        Raises what urllib raises when tasktrail does not answer 200."""
        q = urllib.parse.urlencode({"app": self.app_id, "runner": self.runner.runner_id, "wait": self.wait_s})
        req = urllib.request.Request(f"{self.web_url}/api/v1/agent/commands?{q}")
        if self.token:
            req.add_header("Authorization", bearer(self.token))
        with urllib.request.urlopen(req, timeout=self.wait_s + 30) as resp:
            return json.loads(resp.read())["commands"]

    def handle(self, cmd: dict) -> dict:
        """Carry out one command; journal, report and return {command_id, state, reason, new_invocation_id,
        ...}. Whatever the runner raises makes the command refused with it, never done."""
        try:
            if cmd["kind"] == "abort":
                out = self._abort(cmd)
            elif cmd["kind"] == "rerun":
                out = self._rerun(cmd)
            else:
                out = {"state": "refused", "reason": f"this agent does not know {cmd['kind']!r}"}
        except Exception as exc:
            out = {"state": "refused", "reason": f"{type(exc).__name__}: {exc}"}
        out = {"command_id": cmd["command_id"], "kind": cmd["kind"], "target": cmd["target"],
               "target_kind": cmd.get("target_kind"), "reason": None, "new_invocation_id": None,
               "runner_id": cmd.get("runner_id") or self.runner.runner_id, **out}
        self._write_journal(out)
        self._report(out)
        self.handled.append(out)
        return out

    def _abort(self, cmd: dict) -> dict:
        raise NotImplementedError

    def _rerun(self, cmd: dict) -> dict:
        raise NotImplementedError

    def _report(self, out: dict) -> None:
        """Report an outcome as the runner context the command was delivered to (only its report counts,
        docs/control.md): after a restart, a journal entry is re-sent under its old context id."""
        rid = out.get("runner_id") or self.runner.runner_id
        runner = self.runner if rid == self.runner.runner_id else Runner(rid, None, hostname=None, pid=None)
        self.emitter.command(out["command_id"], out["state"], kind=out["kind"], target=out["target"],
                             target_kind=out["target_kind"], reason=out["reason"],
                             new_invocation_id=out["new_invocation_id"], runner=runner)
        self.emitter.flush()

    # --- the journal ---------------------------------------------------------------------------------------
    def _write_journal(self, out: dict) -> None:
        if self.journal:
            with open(self.journal, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(out) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def _replay_journal(self) -> None:
        if self.journal and os.path.exists(self.journal):
            with open(self.journal, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        self._report(json.loads(line))
