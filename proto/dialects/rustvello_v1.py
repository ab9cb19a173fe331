"""rustvello-otel.v1: what rustvello 0.9 sends (see shared/fixtures/rustvello-otel-v1).

Log events of scope `rustvello.lifecycle`:
  task.submitted → REGISTERED, task.started → RUNNING, task.succeeded → SUCCESS,
  task.failed → FAILED, task.retry_scheduled → RETRY, worker.started/stopped → runner
  lifecycle. The FAILED of an attempt that is retried is stored as sent; the query
  layer's adjuster reads it as RETRY. Spans `rustvello.task.execute` are the attempts'
  traces and are stored raw with their invocation id.
"""
from __future__ import annotations

from .. import names as n
from ..model import RunnerEvent, Transition
from .base import Dialect, LogIn, Out, ResourceInfo, SpanIn, as_float, as_int, leftover_json

_TASK_STATUS = {
    "task.submitted": "REGISTERED",
    "task.started": "RUNNING",
    "task.succeeded": "SUCCESS",
    "task.failed": "FAILED",
    "task.retry_scheduled": "RETRY",
}
_WORKER = {"worker.started": "started", "worker.stopped": "stopped"}
_KNOWN = frozenset({
    n.REVISION, n.RV_EVENT, n.RV_TASK_ID, n.RV_INVOCATION_ID, n.RV_ATTEMPT,
    n.RV_PARENT_INVOCATION_ID, n.RV_WORKFLOW_ID, n.RV_WORKFLOW_TYPE, n.RV_WORKFLOW_PARENT_ID,
    n.RV_DURATION_S, n.RV_ERROR_TYPE,
})


class RustvelloV1(Dialect):
    name = n.RUSTVELLO_V1
    scopes = (n.RV_SCOPE,)

    def map_log(self, res: ResourceInfo, rec: LogIn, out: Out) -> bool:
        a = rec.attrs
        event = rec.event_name or a.get(n.RV_EVENT) or (rec.body if isinstance(rec.body, str) else None)
        status = _TASK_STATUS.get(event)
        if status is not None:
            inv = a.get(n.RV_INVOCATION_ID)
            if not inv:
                return False
            if res.parent_runner_id:
                runner, worker = res.parent_runner_id, res.runner_id
            else:
                runner, worker = res.runner_id, None
            out.rows["transitions"].append(Transition(
                rec.ts, res.app_id, str(inv), a.get(n.RV_TASK_ID), status, None,
                runner, worker, res.runner_id if status == "RUNNING" else None,
                as_int(a.get(n.RV_ATTEMPT)), self.name, rec.trace_id, rec.span_id,
                a.get(n.RV_PARENT_INVOCATION_ID), None,
                a.get(n.RV_WORKFLOW_ID), a.get(n.RV_WORKFLOW_TYPE), a.get(n.RV_WORKFLOW_PARENT_ID),
                None, None, a.get(n.RV_ERROR_TYPE), None, None,
                as_float(a.get(n.RV_DURATION_S)), leftover_json(a, _KNOWN), None, rec.record_id,
            ))
            return True
        kind = _WORKER.get(event)
        if kind is not None and res.runner_id:
            out.rows["runner_events"].append(RunnerEvent(
                rec.ts, res.app_id, res.runner_id, kind, res.runner_class, res.parent_runner_id,
                res.hostname, res.pid, None, None, None, self.name, leftover_json(a, _KNOWN), rec.record_id,
            ))
            return True
        return False

    def span_invocation(self, span: SpanIn):
        return span.attrs.get(n.RV_INVOCATION_ID)
