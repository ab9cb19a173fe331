"""tasktrail.v1: our convention for runners that can say more than rustvello does.

Every entity of the canonical model is one OTLP log record (or span event) whose
`event_name` is in proto.names.TASKTRAIL_V1_EVENTS; docs/tasktrail-v1.md is the
reference. Runner context comes from record attributes (a log record's scope attributes included:
ingest/map.py applies them to each record), else from the resource.
"""
from __future__ import annotations

import json

from .. import names as n
from ..model import (AtomicDecision, AtomicExecution, Command, Definition, EventRecord, InvocationCall, QueueDepth,
                     RunnerEvent, Transition, TriggerRun)
from ..masking import mask
from ..status import normalize
from .base import (Dialect, LogIn, Out, ResourceInfo, SpanIn, as_float, as_ids, as_int, as_str,
                   leftover_json, to_micros)

_CTX_KEYS = frozenset({n.REVISION, n.TT_RUNNER_ID, n.TT_RUNNER_CLASS, n.TT_RUNNER_PARENT_ID,
                       n.TT_RUNNER_HOSTNAME, n.TT_RUNNER_PID, n.TT_RUNNER_THREAD_ID, n.THREAD_ID,
                       n.TT_RECORD_ID, n.TT_SEQ})
_KNOWN = {spec.event_name: frozenset(a.name for a in spec.attributes) | _CTX_KEYS
          for spec in n.TASKTRAIL_V1_EVENTS}
_RUNNER_KIND = {n.EV_RUNNER_CONTEXT: "context", n.EV_RUNNER_STARTED: "started",
                n.EV_RUNNER_STOPPED: "stopped", n.EV_RUNNER_HEARTBEAT: "heartbeat"}

_DEFINITION = {n.EV_APP_CONFIG: ("app", n.TT_APP_SETTINGS), n.EV_RUNNER_CONFIG: ("runner", n.TT_RUNNER_SETTINGS),
               n.EV_TASK_DEFINITION: ("task", n.TT_TASK_OPTIONS)}
_UNSET = object()


def _object(v, default=_UNSET):
    """A JSON-object attribute (JSON text or an OTLP kvlist) as a dict; `default` when absent, None when it
    is not an object."""
    if v is None or v == "":
        return None if default is _UNSET else default
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return None
    return v if isinstance(v, dict) else None


# The arguments an invocation_calls row keeps: a preview (its transitions keep the whole value).
CALL_ARGUMENTS_CHARS = 8192


def _call(rec: LogIn, a: dict, app: str, inv: str, rows: dict) -> None:
    """The call the status record names (tasktrail.call.id): one invocation_calls row."""
    args = as_str(a.get(n.TT_ARGUMENTS))
    rows["invocation_calls"].append(InvocationCall(
        rec.ts, app, str(a[n.TT_CALL_ID]), inv, a.get(n.TT_TASK_ID),
        args[:CALL_ARGUMENTS_CHARS] if args is not None else None, n.TASKTRAIL_V1, rec.record_id))


def _count(v):
    """A count sent as an attribute: a whole number ≥ 0, else None (a negative count means nothing)."""
    v = as_int(v)
    return v if v is not None and 0 <= v < 1 << 63 else None


def _upper(v):
    return str(v).upper() if v is not None else None


class TasktrailV1(Dialect):
    name = n.TASKTRAIL_V1
    scopes = (n.TT_SCOPE,)

    def map_log(self, res: ResourceInfo, rec: LogIn, out: Out) -> bool:
        ev = rec.event_name or (rec.body if isinstance(rec.body, str) else None)
        a = rec.attrs
        known = _KNOWN.get(ev)
        if known is None:
            return False
        ctx_id = a.get(n.TT_RUNNER_ID) or res.runner_id
        if n.TT_RUNNER_ID in a:
            parent = a.get(n.TT_RUNNER_PARENT_ID)
            cls = a.get(n.TT_RUNNER_CLASS)
        else:
            parent, cls = res.parent_runner_id, res.runner_class
        app = res.app_id
        rows = out.rows
        extra = leftover_json(a, known)
        rid = rec.record_id

        if ev == n.EV_STATUS:
            status = normalize(as_str(a.get(n.TT_STATUS)))
            inv = a.get(n.TT_INVOCATION_ID)
            if status is None or not inv:
                return False  # not a valid transition: keep it as a raw record
            runner, worker = (parent, ctx_id) if parent else (ctx_id, None)
            rows["transitions"].append(Transition(
                rec.ts, app, str(inv), a.get(n.TT_TASK_ID), status,
                normalize(as_str(a.get(n.TT_PREVIOUS_STATUS))), runner, worker,
                a.get(n.TT_OWNER_RUNNER_ID), as_int(a.get(n.TT_ATTEMPT)), self.name,
                rec.trace_id, rec.span_id, a.get(n.TT_PARENT_INVOCATION_ID), a.get(n.TT_PARENT_EVENT_ID),
                a.get(n.TT_WORKFLOW_ID), a.get(n.TT_WORKFLOW_TYPE), a.get(n.TT_WORKFLOW_PARENT_ID),
                as_str(a.get(n.TT_ARGUMENTS)), as_str(a.get(n.TT_RESULT)), a.get(n.TT_ERROR_TYPE),
                as_str(a.get(n.TT_ERROR_MESSAGE)), as_str(a.get(n.TT_ERROR_TRACEBACK)),
                as_float(a.get(n.TT_DURATION_S)), extra, as_int(a.get(n.TT_SEQ)), rid,
            ))
            if a.get(n.TT_CALL_ID):
                _call(rec, a, app, str(inv), rows)
            # The acting context is a runner too: keep its topology (once per request).
            if ctx_id and n.TT_RUNNER_ID in a and (app, ctx_id) not in out.contexts:
                out.contexts.add((app, ctx_id))
                self._context(rec, res, out, ctx_id, "context", cls, parent, a, None, None)
            return True

        if ev in _RUNNER_KIND:
            if not ctx_id:
                return False
            self._context(rec, res, out, ctx_id, _RUNNER_KIND[ev], cls, parent, a, extra, rid)
            return True

        if ev in _DEFINITION:
            return self._definition(rec, res, a, ev, (ctx_id, cls, parent), rid, out)
        handler = _BY_RUNNER.get(ev)
        if handler is not None:
            return handler(self, rec, a, app, ctx_id, rid, rows)
        handler = _BY_APP.get(ev)
        return handler(self, rec, a, app, rid, rows) if handler is not None else False

    def _definition(self, rec: LogIn, res, a: dict, ev: str, ctx: tuple, rid, out: Out) -> bool:
        """An app configuration, runner settings or task definition: its body is the JSON objects it carries;
        the runner context it names is kept as a runner too. False (kept raw) when it is not valid."""
        ctx_id, cls, parent = ctx
        kind, key = _DEFINITION[ev]
        alone = kind == "app" and a.get(n.TT_APP_COMPONENTS) not in (None, "")  # components without settings
        value = _object(a.get(key), {} if alone else _UNSET)
        if value is None:
            return False
        if kind == "app":  # settings, components or both (components alone: settings {})
            components = _object(a.get(n.TT_APP_COMPONENTS), {})
            if components is None:
                return False
            subject, body = res.app_id, {"components": mask(components), "settings": mask(value)}
        elif kind == "runner":
            if not ctx_id:
                return False
            subject, body = ctx_id, {"runner_class": cls, "settings": mask(value)}
        else:
            subject, body = a.get(n.TT_TASK_ID), {"options": mask(value)}
            if not subject:
                return False
        out.rows["definitions"].append(Definition(
            rec.ts, res.app_id, kind, str(subject), str(ctx_id) if ctx_id else None,
            json.dumps(body, default=str, ensure_ascii=False, separators=(",", ":")), self.name, rid))
        if ctx_id and n.TT_RUNNER_ID in a and (res.app_id, ctx_id) not in out.contexts:
            out.contexts.add((res.app_id, ctx_id))
            self._context(rec, res, out, ctx_id, "context", cls, parent, a, None, None)
        return True

    def _queue_depth(self, rec: LogIn, a: dict, app: str, ctx_id, rid, rows: dict) -> bool:
        queue, depth = a.get(n.TT_QUEUE_NAME), as_int(a.get(n.TT_QUEUE_PENDING))
        if queue in (None, "") or depth is None or not 0 <= depth < 1 << 63:
            return False  # not a depth (none, negative, past BIGINT): kept as a raw record
        consumers = a.get(n.TT_QUEUE_CONSUMERS)
        rows["queue_depths"].append(QueueDepth(
            rec.ts, app, str(queue), depth, as_ids(consumers) if consumers is not None else None,
            _count(a.get(n.TT_QUEUE_CONSUMER_COUNT)), str(ctx_id) if ctx_id else None, self.name, rid))
        return True

    def _command(self, rec: LogIn, a: dict, app: str, ctx_id, rid, rows: dict) -> bool:
        """An agent's report on a command (issue 19): only the states an agent may report are commands;
        anything else (a forged "requested") stays a raw record."""
        cmd_id, state = a.get(n.TT_CMD_ID), as_str(a.get(n.TT_CMD_STATE))
        state = state.lower() if state else None
        if not cmd_id or state not in n.COMMAND_AGENT_STATES:
            return False
        rows["command_records"].append(Command(
            rec.ts, app, str(cmd_id), as_str(a.get(n.TT_CMD_KIND)) or "", as_str(a.get(n.TT_CMD_TARGET)) or "",
            as_str(a.get(n.TT_CMD_TARGET_KIND)) or "", state, None, ctx_id, as_str(a.get(n.TT_CMD_REASON)),
            None, as_str(a.get(n.TT_CMD_NEW_INVOCATION_ID)), self.name,
            # No identity: a report sent again is stored again and the view `command_steps` counts the first
            # after delivery, so an early or forged report with the same record id cannot shadow the real one.
            None,
        ))
        return True

    def _atomic_decision(self, rec: LogIn, a: dict, app: str, ctx_id, rid, rows: dict) -> bool:
        reason = _upper(a.get(n.TT_AS_REASON))
        if not reason or not ctx_id:
            return False
        rows["atomic_decisions"].append(AtomicDecision(
            rec.ts, app, ctx_id, reason, to_micros(a.get(n.TT_AS_CYCLE_START)),
            to_micros(a.get(n.TT_AS_SLOT_START)), to_micros(a.get(n.TT_AS_SLOT_END)),
            as_int(a.get(n.TT_AS_POSITION)), as_int(a.get(n.TT_AS_RUNNER_COUNT)),
            a.get(n.TT_AS_ASSIGNED_RUNNER_ID), as_str(a.get(n.TT_AS_MESSAGE)), self.name, rid,
        ))
        return True

    def _atomic_execution(self, rec: LogIn, a: dict, app: str, ctx_id, rid, rows: dict) -> bool:
        run_id, status = a.get(n.TT_AS_RUN_ID), _upper(a.get(n.TT_AS_STATUS))
        if not run_id or not status:
            return False
        rows["atomic_executions"].append(AtomicExecution(
            rec.ts, app, str(run_id), ctx_id, to_micros(a.get(n.TT_AS_START)),
            to_micros(a.get(n.TT_AS_END)), status, as_str(a.get(n.TT_AS_REASON)), self.name, rid,
        ))
        return True

    def _event(self, rec: LogIn, a: dict, app: str, rid, rows: dict) -> bool:
        event_id = a.get(n.TT_EVENT_ID)
        if not event_id:
            return False
        rows["event_records"].append(EventRecord(
            rec.ts, app, str(event_id), a.get(n.TT_EVENT_CODE), as_str(a.get(n.TT_EVENT_PAYLOAD)),
            as_ids(a.get(n.TT_EVENT_MATCHED)), as_ids(a.get(n.TT_EVENT_VALID)),
            a.get(n.TT_EVENT_EMITTED_BY_INVOCATION), a.get(n.TT_EVENT_EMITTED_BY_TASK),
            a.get(n.TT_EVENT_EMITTED_BY_RUNNER) or a.get(n.TT_RUNNER_ID), self.name, rid,
        ))
        return True

    def _trigger_run(self, rec: LogIn, a: dict, app: str, rid, rows: dict) -> bool:
        run_id = a.get(n.TT_TR_ID)
        if not run_id:
            return False
        rows["trigger_runs"].append(TriggerRun(
            rec.ts, app, str(run_id), a.get(n.TT_TR_TRIGGER_ID), a.get(n.TT_TASK_ID),
            a.get(n.TT_TR_LOGIC), as_ids(a.get(n.TT_TR_CONDITION_IDS)),
            as_ids(a.get(n.TT_TR_VALID_CONDITION_IDS)), as_ids(a.get(n.TT_TR_EVENT_IDS)),
            as_ids(a.get(n.TT_TR_SOURCE_INVOCATION_IDS)), a.get(n.TT_TR_TRIGGERED_INVOCATION_ID),
            as_str(a.get(n.TT_TR_ARGUMENTS)), to_micros(a.get(n.TT_TR_CLAIMED_AT)),
            to_micros(a.get(n.TT_TR_EXECUTED_AT)), as_str(a.get(n.TT_TR_PARTICIPANTS)),
            a.get(n.TT_TR_AS_RUN_ID), a.get(n.TT_TR_AS_RUNNER_ID), self.name, rid,
        ))
        return True

    def _context(self, rec, res, out, ctx_id, kind, cls, parent, a, extra, rid):
        eligible = a.get(n.TT_ATOMIC_ELIGIBLE)
        queues = a.get(n.TT_CONSUMED_QUEUES)
        # The resource's host and pid describe the sending process: they fill in only for the resource's
        # own context, never for another one the record names (a parent reporting a child's heartbeat).
        own = n.TT_RUNNER_ID not in a or str(ctx_id) == res.runner_id
        out.rows["runner_events"].append(RunnerEvent(
            rec.ts, res.app_id, str(ctx_id), kind, cls, parent,
            a.get(n.TT_RUNNER_HOSTNAME) or (res.hostname if own else None),
            as_int(a.get(n.TT_RUNNER_PID)) or (res.pid if own else None),
            as_int(a.get(n.TT_RUNNER_THREAD_ID) or a.get(n.THREAD_ID)),
            bool(eligible) if eligible is not None else None,
            as_ids(queues) if queues is not None else None, self.name, extra, rid,
        ))

    def span_invocation(self, span: SpanIn):
        return span.attrs.get(n.TT_INVOCATION_ID)


# The records whose rows need the acting runner context, and those that need only the app.
_BY_RUNNER = {n.EV_ATOMIC_DECISION: TasktrailV1._atomic_decision, n.EV_ATOMIC_EXECUTION: TasktrailV1._atomic_execution,
              n.EV_QUEUE_DEPTH: TasktrailV1._queue_depth, n.EV_COMMAND: TasktrailV1._command}
_BY_APP = {n.EV_EVENT: TasktrailV1._event, n.EV_TRIGGER_RUN: TasktrailV1._trigger_run}
