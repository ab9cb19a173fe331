"""A small emitter for Python runners: tasktrail.v1 over OTLP.

    from tasktrail.proto.emitter import Emitter, Runner
    em = Emitter(endpoint="http://127.0.0.1:4317", app_id="shop",
                 runner=Runner("r-1", "ThreadRunner"), token="...")
    em.status("inv-1", "RUNNING", task_id="shop.pay", attempt=0)
    em.flush(); em.shutdown()

Every call is one OTLP log record and never blocks the caller: by default it goes on a bounded queue of
our own that threads send as OTLP protobuf (proto/otlp_sender.py: 2048 records a request, a record's runner
context once per request on its scope, retries with back-off, drops counted when full).
`Emitter(..., logger_provider=provider)` sends through an OTel SDK LoggerProvider of yours instead.
"""
from __future__ import annotations

import itertools
import json
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping, Optional

from . import names as n
from .bearer import bearer
from .masking import mask
from .pulse import ProcessPulse  # noqa: F401 - documented as tasktrail.proto.emitter.ProcessPulse
from .status import STATUSES, normalize


@dataclass(frozen=True)
class Runner:
    """A runner context: a top-level runner, or a worker (with `parent_id`). A field set to None (or
    empty) is not sent: a process that names a context it does not hold (a heartbeat for a child) sends
    the id alone, and tasktrail keeps what the context's own records said."""
    runner_id: str
    runner_class: Optional[str] = "Runner"
    parent_id: Optional[str] = None
    hostname: Optional[str] = field(default_factory=socket.gethostname)
    pid: Optional[int] = field(default_factory=os.getpid)
    thread_id: Optional[int] = None

    def attributes(self) -> dict:
        """The tasktrail.runner.* record attributes of the fields that are known (computed once; the
        caller must not change the dict)."""
        cached = self.__dict__.get("_attributes")
        if cached is None:
            cached = {n.TT_RUNNER_ID: self.runner_id}
            for key, value in ((n.TT_RUNNER_CLASS, self.runner_class), (n.TT_RUNNER_HOSTNAME, self.hostname),
                               (n.TT_RUNNER_PID, self.pid), (n.TT_RUNNER_PARENT_ID, self.parent_id),
                               (n.TT_RUNNER_THREAD_ID, self.thread_id)):
                if value is not None and value != "":
                    cached[key] = value
            self.__dict__["_attributes"] = cached  # a frozen dataclass: set past __setattr__, once
        return cached


class _Identity:
    """Record ids and the sender's sequence for one process: ids are a random process prefix and a counter
    (unique across processes, and renewed in a forked child, which would otherwise repeat its parent's),
    the sequence grows with every record this process sends (tasktrail.seq: the order shown when
    timestamps are equal or a clock steps back)."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count(1)

    def next(self) -> tuple[str, int]:
        """(record id, seq) of the next record."""
        k = next(self._count)  # itertools.count is atomic under the GIL
        return f"{self._prefix}-{k:x}", k


_IDENTITY = _Identity()


def _ns(value) -> Optional[int]:
    """datetime, float seconds or int nanoseconds to int nanoseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):  # whole microseconds (float ns would truncate some times 1 µs early)
        return round(value.timestamp() * 1e6) * 1000
    if isinstance(value, float):
        return int(value * 1e9)
    return int(value)


def _json(value) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, default=repr)


def _settings_json(settings: Mapping[str, Any]) -> str:
    """Settings as the JSON object a definition carries, secret-looking values masked (proto/masking.py)."""
    return json.dumps(mask(dict(settings)), default=str, ensure_ascii=False)


def _clean(attrs: Mapping[str, Any]) -> dict:
    """`attrs` without its None values, lists and tuples as lists of strings."""
    out = {k: v for k, v in attrs.items() if v is not None}
    for k, v in out.items():
        if isinstance(v, (list, tuple)):
            out[k] = [str(x) for x in v]
    return out


_CANONICAL = frozenset(STATUSES)
_STATUS_KEYS = (n.TT_TASK_ID, n.TT_PREVIOUS_STATUS, n.TT_OWNER_RUNNER_ID, n.TT_ATTEMPT, n.TT_PARENT_INVOCATION_ID,
                n.TT_PARENT_EVENT_ID, n.TT_WORKFLOW_ID, n.TT_WORKFLOW_TYPE, n.TT_WORKFLOW_PARENT_ID, n.TT_ARGUMENTS,
                n.TT_RESULT, n.TT_ERROR_TYPE, n.TT_ERROR_MESSAGE, n.TT_ERROR_TRACEBACK, n.TT_DURATION_S, n.TT_CALL_ID)
# Python's logging levels as OTel severities (number, text): the nearest level wins.
_SEVERITY = {10: (5, "DEBUG"), 20: (9, "INFO"), 30: (13, "WARN"), 40: (17, "ERROR"), 50: (21, "FATAL")}


class Emitter:
    """Sends tasktrail.v1 records for one app; each method names one canonical entity."""

    def __init__(self, endpoint: str, app_id: str, runner: Runner | str | None = None, *,
                 protocol: str = "grpc", token: Optional[str] = None, service_name: str = "tasktrail-emitter",
                 headers: Optional[Mapping[str, str]] = None, export_interval_ms: int = 200,
                 max_queue_size: int = 50_000, logger_provider=None, sender=None) -> None:
        """`endpoint`: the OTLP receiver (http://host:4317 for gRPC, http://host:4318 for HTTP); `runner`:
        the process's own runner context, sent on the resource. `logger_provider`: an OTel SDK
        LoggerProvider to send through instead of our own sender (its resource and processors are yours;
        `max_queue_size`, `headers` and `token` then do not apply). `sender`: an object with LogSender's
        add / full / flush / shutdown / stats in place of ours (the tests' in-process store). Raises
        ValueError on an unknown protocol."""
        if isinstance(runner, str):
            runner = Runner(runner)
        self.runner = runner
        self.app_id = app_id
        hdrs = dict(headers or {})
        if token:
            hdrs["authorization"] = bearer(token)
        res = {n.SERVICE_NAME: service_name, n.SERVICE_NAMESPACE: app_id, n.TT_APP_ID: app_id,
               n.REVISION: n.TASKTRAIL_V1}
        if runner is not None:
            res.update(runner.attributes())
        self.resource = res
        if logger_provider is not None:
            self._sender, self._provider = None, logger_provider
        elif sender is not None:
            self._sender, self._provider = sender, None
        else:
            from .otlp_sender import LogSender
            self._sender = LogSender(endpoint, res, protocol=protocol, headers=hdrs, max_queue_size=max_queue_size,
                                     interval_ms=export_interval_ms)
            self._provider = None
        self._loggers: dict = {}   # scope name -> OTel SDK logger (the SDK path only)

    # --- the entities ----------------------------------------------------------------
    def status(self, invocation_id: str, status: str, *, task_id: Optional[str] = None,
               runner: Optional[Runner] = None, previous_status: Optional[str] = None,
               owner_runner_id: Optional[str] = None, attempt: Optional[int] = None,
               parent_invocation_id: Optional[str] = None, parent_event_id: Optional[str] = None,
               workflow_id: Optional[str] = None, workflow_type: Optional[str] = None,
               workflow_parent_id: Optional[str] = None, arguments: Any = None, result: Any = None,
               error_type: Optional[str] = None, error_message: Optional[str] = None,
               error_traceback: Optional[str] = None, duration_s: Optional[float] = None,
               timestamp=None, call_id: Optional[str] = None) -> None:
        canonical = normalize(status)
        if canonical is None:
            raise ValueError(f"unknown status {status!r}")
        # Built without None values, not built whole and cleaned: this is the runner's hot path (issue 20).
        a = {k: v for k, v in zip(_STATUS_KEYS, (
            task_id, normalize(previous_status) if previous_status else None, owner_runner_id, attempt,
            parent_invocation_id, parent_event_id, workflow_id, workflow_type, workflow_parent_id,
            arguments if arguments is None or type(arguments) is str else _json(arguments),
            result if result is None or type(result) is str else _json(result), error_type, error_message,
            error_traceback, duration_s, call_id)) if v is not None}
        a[n.TT_INVOCATION_ID], a[n.TT_STATUS] = invocation_id, canonical
        self._put(n.EV_STATUS, runner, timestamp, a)

    def transition(self, invocation_id: str, status: str, runner: Optional[Runner] = None,
                   owner_runner_id: Optional[str] = None, task_id: Optional[str] = None,
                   timestamp: Optional[int] = None) -> None:
        """`status()` for a runner's hot path (the pynenc exporter's every transition, issue 20): a transition
        that carries its task and owner only; `status` already canonical (proto/status.py STATUSES),
        `timestamp` int nanoseconds (None: now). Raises ValueError for a status that is not canonical."""
        if status not in _CANONICAL:
            raise ValueError(f"not a canonical status: {status!r}")
        a = {n.TT_INVOCATION_ID: invocation_id, n.TT_STATUS: status}
        if task_id is not None:
            a[n.TT_TASK_ID] = task_id
        if owner_runner_id is not None:
            a[n.TT_OWNER_RUNNER_ID] = owner_runner_id
        self._put(n.EV_STATUS, runner, timestamp, a)

    def runner_started(self, runner: Optional[Runner] = None, timestamp=None) -> None:
        self._emit(n.EV_RUNNER_STARTED, runner, timestamp, {})

    def runner_stopped(self, runner: Optional[Runner] = None, timestamp=None) -> None:
        self._emit(n.EV_RUNNER_STOPPED, runner, timestamp, {})

    def heartbeat(self, runner: Optional[Runner] = None, *, atomic_eligible: Optional[bool] = None,
                  consumed_queues: Optional[Iterable[str]] = None, timestamp=None) -> None:
        self._emit(n.EV_RUNNER_HEARTBEAT, runner, timestamp, {
            n.TT_ATOMIC_ELIGIBLE: atomic_eligible,
            n.TT_CONSUMED_QUEUES: list(consumed_queues) if consumed_queues is not None else None})

    def atomic_decision(self, reason: str, *, runner: Optional[Runner] = None, cycle_start=None,
                        slot_start=None, slot_end=None, position: Optional[int] = None,
                        runner_count: Optional[int] = None, assigned_runner_id: Optional[str] = None,
                        message: Optional[str] = None, timestamp=None) -> None:
        self._emit(n.EV_ATOMIC_DECISION, runner, timestamp, {
            n.TT_AS_REASON: reason.upper(), n.TT_AS_CYCLE_START: _ns(cycle_start),
            n.TT_AS_SLOT_START: _ns(slot_start), n.TT_AS_SLOT_END: _ns(slot_end), n.TT_AS_POSITION: position,
            n.TT_AS_RUNNER_COUNT: runner_count, n.TT_AS_ASSIGNED_RUNNER_ID: assigned_runner_id,
            n.TT_AS_MESSAGE: message})

    def atomic_execution(self, run_id: str, status: str, *, runner: Optional[Runner] = None, start=None,
                         end=None, reason: Optional[str] = None, timestamp=None) -> None:
        self._emit(n.EV_ATOMIC_EXECUTION, runner, timestamp, {
            n.TT_AS_RUN_ID: run_id, n.TT_AS_STATUS: status.upper(), n.TT_AS_START: _ns(start),
            n.TT_AS_END: _ns(end), n.TT_AS_REASON: reason})

    def event(self, event_id: str, event_code: str, payload: Any = None, *,
              matched_condition_ids: Iterable[str] = (), valid_condition_ids: Iterable[str] = (),
              emitted_by_invocation_id: Optional[str] = None, emitted_by_task_id: Optional[str] = None,
              emitted_by_runner_id: Optional[str] = None, runner: Optional[Runner] = None,
              timestamp=None) -> None:
        self._emit(n.EV_EVENT, runner, timestamp, {
            n.TT_EVENT_ID: event_id, n.TT_EVENT_CODE: event_code, n.TT_EVENT_PAYLOAD: _json(payload),
            n.TT_EVENT_MATCHED: list(matched_condition_ids), n.TT_EVENT_VALID: list(valid_condition_ids),
            n.TT_EVENT_EMITTED_BY_INVOCATION: emitted_by_invocation_id,
            n.TT_EVENT_EMITTED_BY_TASK: emitted_by_task_id, n.TT_EVENT_EMITTED_BY_RUNNER: emitted_by_runner_id})

    def trigger_run(self, trigger_run_id: str, *, trigger_id: Optional[str] = None,
                    task_id: Optional[str] = None, logic: Optional[str] = None,
                    condition_ids: Iterable[str] = (), valid_condition_ids: Iterable[str] = (),
                    event_ids: Iterable[str] = (), source_invocation_ids: Iterable[str] = (),
                    triggered_invocation_id: Optional[str] = None, arguments_preview: Optional[str] = None,
                    claimed_at=None, executed_at=None, participants: Optional[list] = None,
                    atomic_service_run_id: Optional[str] = None, atomic_service_runner_id: Optional[str] = None,
                    runner: Optional[Runner] = None, timestamp=None) -> None:
        self._emit(n.EV_TRIGGER_RUN, runner, timestamp, {
            n.TT_TR_ID: trigger_run_id, n.TT_TR_TRIGGER_ID: trigger_id, n.TT_TASK_ID: task_id,
            n.TT_TR_LOGIC: logic, n.TT_TR_CONDITION_IDS: list(condition_ids),
            n.TT_TR_VALID_CONDITION_IDS: list(valid_condition_ids), n.TT_TR_EVENT_IDS: list(event_ids),
            n.TT_TR_SOURCE_INVOCATION_IDS: list(source_invocation_ids),
            n.TT_TR_TRIGGERED_INVOCATION_ID: triggered_invocation_id, n.TT_TR_ARGUMENTS: arguments_preview,
            n.TT_TR_CLAIMED_AT: _ns(claimed_at), n.TT_TR_EXECUTED_AT: _ns(executed_at),
            n.TT_TR_PARTICIPANTS: _json(participants), n.TT_TR_AS_RUN_ID: atomic_service_run_id,
            n.TT_TR_AS_RUNNER_ID: atomic_service_runner_id})

    # --- definitions (sent at start and when a value changes; secret-looking values are masked) ---------
    def app_config(self, settings: Mapping[str, Any], *, components: Optional[Mapping[str, str]] = None,
                   runner: Optional[Runner] = None, timestamp=None) -> None:
        """The app's settings (name -> value) and component classes (e.g. {"broker": "RedisBroker"})."""
        self._emit(n.EV_APP_CONFIG, runner, timestamp, {
            n.TT_APP_SETTINGS: _settings_json(settings),
            n.TT_APP_COMPONENTS: _settings_json(components) if components is not None else None})

    def runner_config(self, settings: Mapping[str, Any], *, runner: Optional[Runner] = None,
                      timestamp=None) -> None:
        """The settings of `runner` (else this emitter's runner): loop sleep, thread and process counts, …"""
        self._emit(n.EV_RUNNER_CONFIG, runner, timestamp, {n.TT_RUNNER_SETTINGS: _settings_json(settings)})

    def task_definition(self, task_id: str, options: Mapping[str, Any], *, runner: Optional[Runner] = None,
                        timestamp=None) -> None:
        """The options of task `task_id`: concurrency control, key arguments, retries, batch size, cache, …"""
        self._emit(n.EV_TASK_DEFINITION, runner, timestamp, {
            n.TT_TASK_ID: task_id, n.TT_TASK_OPTIONS: _settings_json(options)})

    def queue_depth(self, queue: str, depth: int, *, consumers: Optional[Iterable[str]] = None,
                    consumer_count: Optional[int] = None, runner: Optional[Runner] = None, timestamp=None) -> None:
        """Messages waiting in `queue` now (tasktrail.queue.depth); `consumers`: runner ids that consume it."""
        self._emit(n.EV_QUEUE_DEPTH, runner, timestamp, {
            n.TT_QUEUE_NAME: queue, n.TT_QUEUE_PENDING: int(depth),
            n.TT_QUEUE_CONSUMERS: list(consumers) if consumers is not None else None,
            n.TT_QUEUE_CONSUMER_COUNT: consumer_count})

    def command(self, command_id: str, state: str, *, kind: Optional[str] = None, target: Optional[str] = None,
                target_kind: Optional[str] = None, reason: Optional[str] = None,
                new_invocation_id: Optional[str] = None, runner: Optional[Runner] = None, timestamp=None) -> None:
        """An agent's report on a command it was handed (docs/control.md): `state` delivered, done or refused;
        `reason` why refused (or what was done); `new_invocation_id` a re-run's new invocation. The record id
        is the command's id and state; tasktrail counts the first report after the delivery (the view
        `command_steps`), so a report sent again (an agent restarting) counts once."""
        state = state.lower()
        if state not in n.COMMAND_AGENT_STATES:
            raise ValueError(f"an agent reports {', '.join(n.COMMAND_AGENT_STATES)}, not {state!r}")
        self._emit(n.EV_COMMAND, runner, timestamp, {
            n.TT_CMD_ID: command_id, n.TT_CMD_STATE: state, n.TT_CMD_KIND: kind, n.TT_CMD_TARGET: target,
            n.TT_CMD_TARGET_KIND: target_kind, n.TT_CMD_REASON: reason,
            n.TT_CMD_NEW_INVOCATION_ID: new_invocation_id, n.TT_RECORD_ID: f"{command_id}:{state}:agent"})

    def log(self, message: str, *, level: int = 20, invocation_id: Optional[str] = None,
            task_id: Optional[str] = None, runner: Optional[Runner] = None, logger_name: Optional[str] = None,
            exception: Optional[tuple[str, str, str]] = None, timestamp=None) -> None:
        """One log line (no event name; body = `message`) tied to an invocation and the runner context that
        wrote it. `level`: Python's logging level (10 DEBUG … 50 CRITICAL), sent as OTel's severity number
        and text; `logger_name` is the record's scope. `exception`: (type, message, traceback) as OTel's
        exception.* attributes. tasktrail keeps it as a log line of that invocation (its runner: the
        context's parent when it has one, the context as its worker)."""
        number, text = _SEVERITY[min(_SEVERITY, key=lambda lv: abs(lv - level))]
        attrs = _clean({n.TT_INVOCATION_ID: invocation_id, n.TT_TASK_ID: task_id})
        if exception:
            attrs.update(_clean(dict(zip(("exception.type", "exception.message", "exception.stacktrace"), exception))))
        attrs[n.TT_RECORD_ID], attrs[n.TT_SEQ] = _IDENTITY.next()
        # The OTel scope is the Python logger, as the SDK's own LoggingHandler makes it.
        self._send(_ns(timestamp) or time.time_ns(), None, message, number, text, attrs, logger_name or n.TT_SCOPE,
                   runner.attributes() if runner is not None else None)

    # --- plumbing --------------------------------------------------------------------
    def _emit(self, event_name: str, runner: Optional[Runner], timestamp, attrs: dict) -> None:
        self._put(event_name, runner, timestamp, _clean(attrs))

    def _put(self, event_name: str, runner: Optional[Runner], timestamp, attrs: dict) -> None:
        rid, attrs[n.TT_SEQ] = _IDENTITY.next()
        if not attrs.get(n.TT_RECORD_ID):   # a record's own id where it has one
            attrs[n.TT_RECORD_ID] = rid
        ts = timestamp if type(timestamp) is int else (_ns(timestamp) or time.time_ns())
        context = runner.attributes() if runner is not None else None
        if self._sender is not None:  # (_send's first branch, inline: the runner's hot path)
            self._sender.add((ts, event_name, event_name, 9, "INFO", attrs, n.TT_SCOPE, context))
        else:
            self._send(ts, event_name, event_name, 9, "INFO", attrs, n.TT_SCOPE, context)

    def _send(self, ts: int, event_name, body, severity_number: int, severity_text: str, attrs: dict,
              scope: str, context: Optional[dict] = None) -> None:
        """Queue one record; `context` (the runner context's attributes) goes on its scope (our sender), else
        on the record."""
        if self._sender is not None:
            self._sender.add((ts, event_name, body, severity_number, severity_text, attrs, scope, context))
            return
        from opentelemetry._logs import SeverityNumber
        if context:
            attrs.update(context)
        attrs[n.REVISION] = n.TASKTRAIL_V1  # a provider's resource may not say it (ours does)
        logger = self._loggers.get(scope) or self._loggers.setdefault(scope, self._provider.get_logger(scope))
        logger.emit(timestamp=ts, event_name=event_name, body=body, severity_number=SeverityNumber(severity_number),
                    severity_text=severity_text, attributes=attrs)

    @property
    def stats(self):
        """Our sender's counts (proto/otlp_sender.py SenderStats: sent, dropped, refused, retries,
        last_error); None on the SDK path."""
        return self._sender.stats if self._sender is not None else None

    def queue_full(self) -> bool:
        """True when the next record would be dropped (our sender's queue is full; the SDK path reads the
        SDK's queue, False when that is not available)."""
        if self._sender is not None:
            return self._sender.full()
        processors = getattr(getattr(self._provider, "_multi_log_record_processor", None), "_log_record_processors", ())
        for p in processors:
            queue = getattr(getattr(p, "_batch_processor", None), "_queue", None)
            if queue is not None and queue.maxlen is not None and len(queue) >= queue.maxlen:
                return True
        return False

    def flush(self, timeout_ms: int = 10_000) -> bool:
        """Send everything queued; False when `timeout_ms` passed first."""
        if self._sender is not None:
            return self._sender.flush(timeout_ms)
        return self._provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        """Flush and stop (our sender; a provider you gave is yours to shut down)."""
        if self._sender is not None:
            self._sender.shutdown()
