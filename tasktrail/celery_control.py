"""Celery's abort and re-run, carried out by tasktrail itself (issue 19, docs/control.md).

A Celery app has no agent process of ours: with `--celery-broker`, `tasktrail serve` is the agent of the
app `--celery-app`. Beside the queue-depth poller (tasktrail/celery_queues.py) an asyncio task takes that
app's commands straight from the command desk (`CommandDesk.hand_out` with the runner context
`tasktrail-celery@<host>-<pid>`, so the app counts as having an agent seen and its buttons show), carries
each out with Celery's own API in a thread of its own, and reports the outcome as tasktrail.v1 records
handed to the ingestor: the path every agent's OTLP report takes (decode, map, the one writer), from the
app and the runner context the command was delivered to, after that delivery was committed.

- abort: `app.control.revoke(ids, terminate=True, signal="SIGTERM", reply=True)`, as Flower does. A worker
  keeps the ids as revoked: a queued task is dropped when it arrives, never run; a running one's pool process
  gets SIGTERM. done when a worker answered (then each aborted task is recorded `tasktrail.status` KILLED:
  the Celery instrumentation sends nothing for a revoked task); refused when the result backend says the
  task is already over, or when no worker answered (a worker started later would still run it).
- rerun: the task's name, args, kwargs and queue from the result backend's extended result
  (`--celery-result-backend`; the Celery app must set `result_extended=True`), sent again with
  `app.send_task` under a new task id, which is the new invocation (recorded REGISTERED at once, without
  its arguments; its worker's spans follow). refused, naming why, without a result backend or an extended result: Celery's
  spans carry no arguments, and tasktrail's are previews, never used as arguments.
Nothing here runs on the event loop; a broker or backend error refuses the command with its reason.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from tasktrail.proto import names as n

log = logging.getLogger("tasktrail.celery")
RUNNER_CLASS = "TasktrailCeleryControl"   # a client of the app (query/liveness.py CLIENT_CLASSES)
POLL_S = 1.0          # how often the desk is asked for the app's commands (an agent polled within 30 s is seen)
ACT_TIMEOUT_S = 60.0  # the longest one command may take with the broker and the backend
REPLY_S = 2.0         # how long revoke waits for the workers' answers
READY = ("SUCCESS", "FAILURE", "REVOKED")   # Celery's states of a task that is over


class CeleryControl:
    """Celery's API for one broker (and result backend). Every method blocks: run it off the event loop."""

    def __init__(self, broker: str, result_backend: Optional[str] = None) -> None:
        from celery import Celery
        self.has_backend = bool(result_backend)
        self.app = Celery("tasktrail-control", broker=broker, backend=result_backend or None,
                          set_as_current=False)
        self.app.conf.update(
            broker_connection_timeout=5, broker_connection_retry=False, broker_connection_max_retries=1,
            broker_transport_options={"socket_connect_timeout": 5, "socket_timeout": 10, "max_retries": 1},
            redis_socket_connect_timeout=5, redis_socket_timeout=10, task_publish_retry=False,
            result_extended=True)

    def act(self, cmd: dict) -> dict:
        """Carry out `cmd` (as the desk handed it out): {state: done|refused, reason, new_invocation_id,
        statuses: [(invocation, task, status, attrs)] to record}. Raises what Celery raised."""
        if cmd["kind"] == "abort":
            return self.abort(cmd)
        if cmd["kind"] == "rerun":
            return self.rerun(cmd["target"])
        return _refused(f"tasktrail's Celery control does not know {cmd['kind']!r}")

    def state(self, task_id: str) -> Optional[str]:
        """The task's state in the result backend (PENDING also for an unknown id), None without one."""
        return self.app.backend.get_task_meta(task_id).get("status") if self.has_backend else None

    def abort(self, cmd: dict) -> dict:
        """Revoke the command's invocations (module doc): done with KILLED statuses once a worker answered,
        refused when none did or all are over by the result backend. Raises what the broker raised."""
        params = cmd.get("parameters") or {}
        ids = [str(i) for i in params.get("invocations") or [cmd["target"]]]
        over = {i: s for i in ids if (s := self.state(i)) in READY}
        todo = [i for i in ids if i not in over]
        if not todo:
            return _refused("already finished: the result backend says "
                            + ", ".join(f"{i} {s}" for i, s in over.items()))
        replies = self.app.control.revoke(todo, terminate=True, signal="SIGTERM", reply=True, timeout=REPLY_S) or []
        if not replies:
            return _refused(f"no Celery worker answered the revoke within {REPLY_S:g} s: none is online to "
                            "take it, and a worker started later would still run the task")
        # A worker answers "terminate: <ids>" for the ids it holds (running, or reserved and never to run),
        # else "terminate: tasks unknown" (the ids stay revoked there: dropped when they arrive).
        answers = "; ".join(f"{worker}: {(answer or {}).get('ok') or (answer or {}).get('error')}"
                            for reply in replies for worker, answer in reply.items())
        statuses = [(i, params.get("task_id"), "KILLED", {
            n.TT_ERROR_TYPE: "TaskRevokedError",
            n.TT_ERROR_MESSAGE: f"revoked by tasktrail command {cmd['command_id']} (control.revoke, terminate=True: "
                                "never run if queued, its pool process sent SIGTERM if running)"}) for i in todo]
        skipped = f"; {len(over)} already over" if over else ""
        return {"state": "done", "new_invocation_id": None, "statuses": statuses,
                "reason": f"revoked {len(todo)} through control.revoke(terminate=True, signal=SIGTERM){skipped}; "
                          f"{len(replies)} worker(s) answered: {answers}"[:2000]}

    def rerun(self, task_id: str) -> dict:
        """Send `task_id`'s task again with the name, args, kwargs and queue of its extended result in the
        result backend: done with the new task id, or refused when they are not known. Raises what the
        broker or the backend raised."""
        if not self.has_backend:
            return _refused("arguments not known: tasktrail has no --celery-result-backend to read them from "
                            "(Celery's spans carry no arguments; its result backend keeps them with "
                            "result_extended=True)")
        meta = self.app.backend.get_task_meta(task_id)
        name = meta.get("name")
        if not name or (meta.get("args") is None and meta.get("kwargs") is None):
            return _refused(f"arguments not known: the result backend holds no extended result for {task_id!r} "
                            f"(state {meta.get('status')}): the Celery app needs result_extended=True, and a "
                            "result is gone once result_expires passed")
        args, kwargs, queue = list(meta.get("args") or ()), dict(meta.get("kwargs") or {}), meta.get("queue")
        new_id = str(uuid.uuid4())
        self.app.send_task(name, args=args, kwargs=kwargs, task_id=new_id, **({"queue": queue} if queue else {}))
        # The arguments stay in Celery: its spans never give them to tasktrail, nor does a re-run.
        attrs = {n.MESSAGING_DESTINATION: queue} if queue else {}
        return {"state": "done", "new_invocation_id": new_id, "statuses": [(new_id, name, "REGISTERED", attrs)],
                "reason": f"re-ran {name} with the arguments of its extended result (send_task"
                          + (f" to queue {queue!r})" if queue else ")")}

    def close(self) -> None:
        """Release the Celery app's connections."""
        self.app.close()


def _refused(reason: str) -> dict:
    return {"state": "refused", "reason": reason, "new_invocation_id": None, "statuses": []}


# --- the records the outcome becomes -------------------------------------------------------------------
def _kv(key: str, value) -> dict:
    return {"key": key, "value": {"stringValue": str(value)}}


def report_request(app_id: str, runner: str, cmd: dict, out: dict, now_ns: Optional[int] = None) -> bytes:
    """One OTLP/JSON logs request: the `tasktrail.command` report of `out` for `cmd` from `runner` (record id
    `<command id>:<state>:agent`; tasktrail counts the first report after delivery), then each status of `out["statuses"]`."""
    now_ns = now_ns or time.time_ns()
    ctx = [_kv(n.TT_RUNNER_ID, runner), _kv(n.TT_RUNNER_CLASS, RUNNER_CLASS)]
    report = {n.TT_CMD_ID: cmd["command_id"], n.TT_CMD_STATE: out["state"], n.TT_CMD_KIND: cmd["kind"],
              n.TT_CMD_TARGET: cmd["target"], n.TT_CMD_TARGET_KIND: cmd.get("target_kind"),
              n.TT_CMD_REASON: out.get("reason"), n.TT_CMD_NEW_INVOCATION_ID: out.get("new_invocation_id"),
              n.TT_RECORD_ID: f"{cmd['command_id']}:{out['state']}:agent"}
    records = [_record(now_ns, n.EV_COMMAND, report, ctx)]
    for inv, task, status, attrs in out.get("statuses", ()):
        attrs = {n.TT_INVOCATION_ID: inv, n.TT_TASK_ID: task, n.TT_STATUS: status,
                 n.TT_RECORD_ID: f"{cmd['command_id']}:{inv}:{status}", **attrs}
        records.append(_record(now_ns, n.EV_STATUS, attrs, ctx))
    res = [_kv(n.SERVICE_NAMESPACE, app_id), _kv(n.SERVICE_NAME, "tasktrail-celery-control"),
           _kv(n.REVISION, n.TASKTRAIL_V1), _kv(n.HOST_NAME, socket.gethostname()),
           {"key": n.PROCESS_PID, "value": {"intValue": str(os.getpid())}}]
    return json.dumps({"resourceLogs": [{"resource": {"attributes": res}, "scopeLogs": [
        {"scope": {"name": n.TT_SCOPE}, "logRecords": records}]}]}).encode()


def _record(ts_ns: int, event: str, attrs: dict, ctx: list) -> dict:
    return {"timeUnixNano": str(ts_ns), "eventName": event, "body": {"stringValue": event},
            "attributes": [_kv(k, v) for k, v in attrs.items() if v is not None] + ctx}


# --- the loop in the server ------------------------------------------------------------------------------
async def run(desk, ingestor, broker: str, app_id: str, result_backend: Optional[str], stop: asyncio.Event,
              poll_s: float = POLL_S) -> None:
    """Take `app_id`'s commands from `desk` every `poll_s` seconds until `stop`, carry each out (one at a
    time, in a thread of its own) and hand its report to `ingestor`. Never raises for a broker's failure."""
    loop = asyncio.get_running_loop()
    runner = f"tasktrail-celery@{socket.gethostname()}-{os.getpid()}"
    pool = ThreadPoolExecutor(1, thread_name_prefix="tasktrail-celery-control")
    control: Optional[CeleryControl] = None
    try:
        while not stop.is_set():
            try:
                cmds = await loop.run_in_executor(None, desk.hand_out, app_id, runner)
            except Exception as exc:  # the store away a moment: ask again at the next interval
                log.error("celery control: cannot take commands for %s: %s", app_id, exc)
                cmds = []
            for cmd in cmds:
                try:
                    control = control or await loop.run_in_executor(pool, CeleryControl, broker, result_backend)
                    out = await _carry_out(loop, pool, control, cmd)
                except Exception as exc:  # Celery cannot even be set up for this broker: the command says why
                    out = _refused(f"cannot set up Celery for the broker: {type(exc).__name__}: {exc}")
                if out.get("failed") and control is not None:   # the next command starts on fresh connections
                    pool.submit(control.close)
                    control = None
                await _report(ingestor, app_id, runner, cmd, out)
            if not cmds:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=poll_s)
                except asyncio.TimeoutError:
                    pass
    finally:
        if control is not None:
            pool.submit(control.close)
        pool.shutdown(wait=False)


async def _carry_out(loop, pool, control: CeleryControl, cmd: dict) -> dict:
    """`control.act(cmd)` in `pool`, within ACT_TIMEOUT_S; what Celery raised, or the time running out,
    is a refusal naming it (marked `failed`: the connections are then opened anew)."""
    try:
        return await asyncio.wait_for(loop.run_in_executor(pool, control.act, cmd), ACT_TIMEOUT_S)
    except asyncio.TimeoutError:
        return {**_refused(f"Celery's broker or result backend did not answer within {ACT_TIMEOUT_S:g} s"),
                "failed": True}
    except Exception as exc:
        return {**_refused(f"{type(exc).__name__}: {exc}"), "failed": True}


async def _report(ingestor, app_id: str, runner: str, cmd: dict, out: dict, tries: int = 5) -> None:
    """Hand the outcome to the ingestor (as an agent's OTLP report); a full write queue is tried again."""
    body = report_request(app_id, runner, cmd, out)
    for attempt in range(tries):
        try:
            await ingestor.export("logs", body, "json", "celery-control")
            log.info("celery control: command %s (%s %s) %s: %s", cmd["command_id"], cmd["kind"], cmd["target"],
                     out["state"], out.get("reason"))
            return
        except Exception as exc:
            if attempt == tries - 1:
                log.error("celery control: cannot record command %s %s (%s); it will expire", cmd["command_id"],
                          out["state"], exc)
                return
            await asyncio.sleep(1.0)
