"""celery-otel: the spans of opentelemetry-instrumentation-celery.

- `apply_async/<task>` (PRODUCER): the task was sent → REGISTERED at the span's start (a re-send of a
  task that is being retried reads as PENDING: query/adjust.py).
- `run/<task>` (CONSUMER): RUNNING at its start, and at its end the outcome from `celery.state`
  (SUCCESS, FAILURE → FAILED, RETRY, REVOKED → KILLED) or, without a state, FAILED for an error status.
  A run span with neither was closed without Celery's postrun, as its process left the task (a revoke's
  SIGTERM: the span's context manager ends it at exit): no outcome is taken from it, never a SUCCESS
  (tasktrail's own Celery abort records KILLED, tasktrail/celery_control.py).
- The task id is `messaging.message.id`; the worker is `celery.hostname` (plus the process id); the
  queue (`messaging.destination`, the routing key) rides in the REGISTERED and RUNNING transitions'
  attrs, so work never picked up can say which queue nobody consumes (query/anomalies.py).
- The parent of a task sent from inside another task is the invocation of the span it was sent from.
  That span usually arrives later (it ends after its children are sent), so the link is made when
  read, from the stored spans (query/family.py, `trace_parents`).
"""
from __future__ import annotations

import json

from .. import names as n
from ..model import RunnerEvent, Transition
from .base import Dialect, LogIn, Out, ResourceInfo, SpanIn, as_int

NAME = "celery-otel"
SCOPE = "opentelemetry.instrumentation.celery"
_STATES = {"SUCCESS": "SUCCESS", "FAILURE": "FAILED", "RETRY": "RETRY", "REVOKED": "KILLED", "REJECTED": "FAILED"}


class CeleryOtel(Dialect):
    name = NAME
    scopes = (SCOPE,)

    def map_span(self, res: ResourceInfo, span: SpanIn, out: Out) -> None:
        a = span.attrs
        action = a.get("celery.action")
        task_id = a.get("messaging.message.id")
        if not task_id or action not in ("apply_async", "run"):
            return
        task = a.get("celery.task_name") or span.name.split("/", 1)[-1]
        host = a.get("celery.hostname") or res.hostname
        pid = res.pid
        queue = a.get(n.MESSAGING_DESTINATION)
        attrs = json.dumps({n.MESSAGING_DESTINATION: str(queue)}) if queue else None
        if action == "apply_async":
            runner = f"{res.service_name or 'celery-client'}@{res.hostname or '?'}-{pid}"
            self._runner(res, out, runner, "CeleryClient", None, span.start_ts)
            out.rows["transitions"].append(Transition(
                span.start_ts, res.app_id, str(task_id), task, "REGISTERED", None, runner, None, None, None,
                self.name, span.trace_id, span.span_id, None, None, None, None, None, None, None, None, None,
                None, None, attrs, None, span.record_id + ":sent"))
            return
        worker_process = f"{host}-{pid}" if host else f"celery-worker-{pid}"
        parent_runner = host or None
        if parent_runner:
            self._runner(res, out, parent_runner, "CeleryWorker", None, span.start_ts)
        self._runner(res, out, worker_process, "CeleryWorkerProcess", parent_runner, span.start_ts)
        attempt = as_int(a.get("celery.retries")) or 0
        state = a.get("celery.state")
        # No state: Celery's postrun never ran, the span was closed as its process left the task (a revoke's
        # SIGTERM, a cold shutdown); an unset span status then says nothing of the outcome: none is taken.
        final = _STATES.get(str(state).upper()) if state else ("FAILED" if span.status_code == 2 else None)
        error_type = a.get("celery.retry.reason") if final == "RETRY" else None
        if final == "FAILED" and span.status_message:
            error_type = span.status_message.split(":", 1)[0]
        runner, worker = (parent_runner, worker_process) if parent_runner else (worker_process, None)
        for ts, status in ((span.start_ts, "RUNNING"), (span.end_ts, final))[:2 if final else 1]:
            out.rows["transitions"].append(Transition(
                ts, res.app_id, str(task_id), task, status, None, runner, worker,
                worker_process if status == "RUNNING" else None, attempt, self.name, span.trace_id, span.span_id,
                None, None, None, None, None, None, None, error_type if status != "RUNNING" else None,
                span.status_message if status == "FAILED" else None, None,
                (span.end_ts - span.start_ts) / 1e6 if status != "RUNNING" else None,
                attrs if status == "RUNNING" else None, None,
                span.record_id + (":start" if status == "RUNNING" else ":end")))

    @staticmethod
    def _runner(res: ResourceInfo, out: Out, runner_id: str, cls: str, parent, ts: int) -> None:
        if (res.app_id, runner_id) in out.contexts:
            return
        out.contexts.add((res.app_id, runner_id))
        out.rows["runner_events"].append(RunnerEvent(ts, res.app_id, runner_id, "context", cls, parent,
                                                     res.hostname, res.pid, None, None, None, NAME, None))

    def map_log(self, res: ResourceInfo, rec: LogIn, out: Out) -> bool:
        return False

    def span_invocation(self, span: SpanIn):
        return span.attrs.get("messaging.message.id")
