"""The command desk (issue 19, docs/control.md): where commands enter the log and leave it for an agent.

tasktrail never reaches into a runner. A request to act (abort, rerun) is appended to the log as a
`requested` command record through the one writer and answered only once it is committed. An agent of the
target's app polls (`GET /api/v1/agent/commands`); handing a command out is itself a record, `delivered`
to that runner context, committed before the answer leaves, under one lock: a command goes to one agent,
once, and is never handed out again. What the agent then does comes back over OTLP (tasktrail.v1
`tasktrail.command`: done or refused). A command no one finished within `--command-ttl` since its last
record gets one `expired` record. A tasktrail killed between requested and delivered finds the command
still requested after its restart and hands it out then; one killed after appending `delivered` but before
answering never hands it out again: it expires (at most once, never twice).

The lock is this process's: one `tasktrail serve` (or one `tasktrail web` beside ingest nodes) hands out
an app's commands.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Optional

from tasktrail.proto.model import Command
from tasktrail.query.commands import ended
from tasktrail.query.errors import BadRequest, Conflict, NotFound
from tasktrail.query.service import QueryService
from tasktrail.store.api import LedgerEntry

AGENT_SEEN_S = 30.0    # an agent that polled within this many seconds is "seen": the buttons show
SEEN_MAX = 10_000      # agents remembered at most (anyone may poll without an ingest token): the oldest go
HAND_OUT_MAX = 20      # commands one poll takes at most


def _now_us() -> int:
    return time.time_ns() // 1000


class CommandDesk:
    """Appends command records (requested, delivered, expired) and hands commands to agents.

    `store`: the log's writer side (`submit`); `query`: the read side; `ttl_s`: --command-ttl;
    `read_only`: --read-only (every request refused)."""

    def __init__(self, store, query: QueryService, *, ttl_s: float, read_only: bool = False,
                 commit_timeout_s: float = 30.0) -> None:
        self.store, self.query, self.ttl_s, self.read_only = store, query, ttl_s, read_only
        self.commit_timeout_s = commit_timeout_s
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], float] = {}   # (app, runner) -> last poll (time.time())
        self._seen_lock = threading.Lock()

    # --- the log ----------------------------------------------------------------------------------
    def _append(self, records: list[Command]) -> None:
        """Append `records` through the writer; returns once they are committed (raises the store's errors)."""
        if not records:
            return
        key = "|".join(r.record_id for r in records)
        entry = LedgerEntry(hashlib.blake2b(key.encode(), digest_size=16).hexdigest(), _now_us(), "api", "commands",
                            len(key))
        self.store.submit({"command_records": records}, len(records), entry).result(self.commit_timeout_s)

    @staticmethod
    def _record(cmd: dict, state: str, *, runner_id=None, reason=None) -> Command:
        return Command(_now_us(), cmd["app_id"], cmd["command_id"], cmd["kind"], cmd["target"], cmd["target_kind"],
                       state, None, runner_id, reason, None, None, "api", f"{cmd['command_id']}:{state}")

    # --- requests (the API) -----------------------------------------------------------------------
    def request(self, kind: str, target_kind: str, target: str, requested_by: str,
                app: Optional[str] = None) -> dict:
        """Append a `requested` command and return {command_id, state, kind, target} once it is durable;
        `app` picks the target among apps sharing its id (else the one the reads pick).

        Raises NotFound (no such invocation / workflow run), Conflict (abort of a finished target, re-run of
        an unfinished one, or a command of the same kind on it still open: its id in the message) and
        PermissionError under --read-only."""
        if self.read_only:
            raise PermissionError("this server is read-only (--read-only): commands are off")
        if kind not in ("abort", "rerun"):
            raise BadRequest(f"unknown command {kind!r}")
        app, params = self._target(kind, target_kind, target, app)
        cmd_id = uuid.uuid4().hex
        rec = Command(_now_us(), app, cmd_id, kind, target, target_kind, "requested", requested_by, None, None,
                      json.dumps(params), None, "api", f"{cmd_id}:requested")
        with self._lock:   # the check and the append together: two requests at once make one command
            found = self.query.open_command(kind, target, app)
            if found is not None:
                on = found["target_kind"].replace("_", " ")
                raise Conflict(f"{kind} command {found['command_id']} on {on} {found['target']!r} is still open "
                               f"(not done, refused or expired yet)"
                               + (f": it names {target_kind.replace('_', ' ')} {target!r}" if found["target"] != target else ""))
            self._append([rec])
        return {"command_id": cmd_id, "state": "requested", "kind": kind, "target": target,
                "target_kind": target_kind, "app_id": app}

    def _target(self, kind: str, target_kind: str, target: str, app: Optional[str]) -> tuple[str, dict]:
        """(app, parameters) of a command on `target` (of `app`, when given); raises NotFound / Conflict."""
        if target_kind == "invocation":
            inv = self.query.invocation(target, app)
            self._check(kind, ended(inv["status"], inv["is_final"]), f"invocation {target!r} is {inv['status']}")
            return inv["app_id"], {"task_id": inv["task_id"], "status": inv["status"],
                                   "arguments_preview": inv["arguments"], "invocations": [target]}
        if target_kind != "workflow_run":
            raise BadRequest(f"unknown target kind {target_kind!r}")
        members = self.query.invocations(workflow=target, app=app, since="all", limit=1000)["items"]
        if not members:
            raise NotFound(f"no workflow run {target!r}")
        root = next((m for m in members if m["invocation_id"] == target), None)
        if kind == "rerun":
            if root is None:
                raise Conflict(f"the root invocation of workflow run {target!r} is not in the log")
            self._check(kind, ended(root["status"], root["is_final"]), f"workflow run {target!r} is {root['status']}")
            return root["app_id"], {"task_id": root["task_id"], "status": root["status"], "invocations": [target]}
        open_ = [m["invocation_id"] for m in members if not ended(m["status"], m["is_final"])]
        if not open_:
            raise Conflict(f"workflow run {target!r} has no unfinished invocation to abort")
        return members[0]["app_id"], {"invocations": open_}

    @staticmethod
    def _check(kind: str, over: bool, what: str) -> None:
        if kind == "abort" and over:
            raise Conflict(f"{what}: only an unfinished one can be aborted")
        if kind == "rerun" and not over:
            raise Conflict(f"{what}: only a finished one can be re-run")

    # --- agents -------------------------------------------------------------------------------------
    def hand_out(self, app: str, runner: str) -> list[dict]:
        """The app's requested commands, each recorded `delivered` to `runner` (committed) before it is
        returned; a command is handed out once, to one runner context. Under --read-only nothing is handed
        out and nothing appended (an empty list)."""
        if not app or not runner:
            raise BadRequest("app and runner are required")
        if self.read_only:
            return []
        self._note_seen(app, runner)
        with self._lock:
            cmds = self.query.pending_commands(app, HAND_OUT_MAX)
            if not cmds:
                return []
            self._append([self._record(c, "delivered", runner_id=runner) for c in cmds])
        return [{**c, "state": "delivered", "runner_id": runner} for c in cmds]

    def _note_seen(self, app: str, runner: str) -> None:
        """Remember that (app, runner) polled now; forget the agents not seen within AGENT_SEEN_S once the
        memory holds SEEN_MAX of them, and the oldest if all are recent."""
        now = time.time()
        with self._seen_lock:
            self._seen.pop((app, runner), None)
            self._seen[(app, runner)] = now          # the dict keeps poll order: the oldest first
            if len(self._seen) > SEEN_MAX:
                cutoff = now - AGENT_SEEN_S
                old = [k for k, t in self._seen.items() if t < cutoff] or list(self._seen)[:len(self._seen) - SEEN_MAX]
                for key in old:
                    del self._seen[key]

    def agents(self, app: Optional[str]) -> list[dict]:
        """Agents of `app` that polled within AGENT_SEEN_S: [{runner_id, last_poll}] (this process's memory)."""
        cutoff = time.time() - AGENT_SEEN_S
        with self._seen_lock:
            seen = sorted(self._seen.items())
        return [{"runner_id": r, "last_poll": datetime.fromtimestamp(t, timezone.utc).isoformat()}
                for (a, r), t in seen if a == app and t >= cutoff]

    def expire_due(self) -> int:
        """Append one `expired` record to each command requested or delivered with no record for ttl_s;
        returns how many."""
        before = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=self.ttl_s)
        with self._lock:
            due = self.query.due_commands(before)
            self._append([self._record(c, "expired", runner_id=c.get("runner_id"),
                                       reason=f"no runner finished it within {self.ttl_s:g} s"
                                       + (" of its delivery" if c["state"] == "delivered" else ""))
                          for c in due])
        return len(due)

    def describe(self) -> dict:
        """What the web shows of the desk: {read_only, ttl_s}."""
        return {"read_only": self.read_only, "ttl_s": self.ttl_s}


__all__ = ["CommandDesk", "AGENT_SEEN_S", "NotFound"]
