"""Canonical rows: what every dialect produces and the store appends.

Each row type is a NamedTuple (cheap to build on the hot path); its field order is
the column order of the table of the same name after the writer's `batch` column
(see store/sql/ and store/rows.py). Times are integer microseconds since the Unix
epoch, UTC. Id lists are tuples of strings; free-form payloads are JSON text.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

Micros = int


class Transition(NamedTuple):
    """One status change of one invocation, with what was known about it then."""
    ts: Micros
    app_id: str
    invocation_id: str
    task_id: Optional[str]
    status: str
    previous_status: Optional[str]
    runner_id: Optional[str]        # top-level runner of the context that made the change
    worker_id: Optional[str]        # that context, when it is a child of the runner
    owner_runner_id: Optional[str]  # owner after the transition (pynenc's status_record.runner_id)
    attempt: Optional[int]
    source: str                     # dialect name
    trace_id: Optional[str]         # hex
    span_id: Optional[str]          # hex
    parent_invocation_id: Optional[str]
    parent_event_id: Optional[str]
    workflow_id: Optional[str]
    workflow_type: Optional[str]
    workflow_parent_id: Optional[str]
    arguments: Optional[str]
    result: Optional[str]
    error_type: Optional[str]
    error_message: Optional[str]
    error_traceback: Optional[str]
    duration_s: Optional[float]
    attrs: Optional[str]            # JSON of attributes no column holds
    seq: Optional[int] = None       # the sender's own order (tasktrail.seq)
    record_id: Optional[str] = None  # identity of the record it came from (see store/sql/0005)


class RunnerEvent(NamedTuple):
    """A runner context seen, started, stopped or heartbeating."""
    ts: Micros
    app_id: str
    runner_id: str
    kind: str                       # context | started | stopped | heartbeat
    runner_class: Optional[str]
    parent_runner_id: Optional[str]
    hostname: Optional[str]
    pid: Optional[int]
    thread_id: Optional[int]
    atomic_eligible: Optional[bool]
    consumed_queues: Optional[tuple]
    source: str
    attrs: Optional[str]
    record_id: Optional[str] = None


class AtomicDecision(NamedTuple):
    """One atomic-service claim decision of one runner (persisted or not by the runner)."""
    ts: Micros
    app_id: str
    runner_id: str
    reason: str
    cycle_start: Optional[Micros]
    slot_start: Optional[Micros]
    slot_end: Optional[Micros]
    position: Optional[int]
    runner_count: Optional[int]
    assigned_runner_id: Optional[str]
    message: Optional[str]
    source: str
    record_id: Optional[str] = None


class AtomicExecution(NamedTuple):
    """A state of one atomic-service execution window; the latest row per run_id wins."""
    ts: Micros
    app_id: str
    run_id: str
    runner_id: Optional[str]
    start_ts: Optional[Micros]
    end_ts: Optional[Micros]
    status: str
    reason: Optional[str]
    source: str
    record_id: Optional[str] = None


class EventRecord(NamedTuple):
    """A trigger event (pynenc EventRecord); a later row for the same event_id updates it."""
    ts: Micros
    app_id: str
    event_id: str
    event_code: Optional[str]
    payload: Optional[str]
    matched_condition_ids: tuple
    valid_condition_ids: tuple
    emitted_by_invocation_id: Optional[str]
    emitted_by_task_id: Optional[str]
    emitted_by_runner_id: Optional[str]
    source: str
    record_id: Optional[str] = None


class TriggerRun(NamedTuple):
    """A trigger run (pynenc TriggerRunRecord) with its participants as JSON."""
    ts: Micros
    app_id: str
    trigger_run_id: str
    trigger_id: Optional[str]
    task_id: Optional[str]
    logic: Optional[str]
    condition_ids: tuple
    valid_condition_ids: tuple
    event_ids: tuple
    source_invocation_ids: tuple
    triggered_invocation_id: Optional[str]
    arguments_preview: Optional[str]
    claimed_at: Optional[Micros]
    executed_at: Optional[Micros]
    participants: Optional[str]
    atomic_service_run_id: Optional[str]
    atomic_service_runner_id: Optional[str]
    source: str
    record_id: Optional[str] = None


class Definition(NamedTuple):
    """One report of a definition: an app's configuration, a runner's settings or a task's options. Sent at
    start and when a value changes; the latest row per (app_id, kind, subject_id) is what holds."""
    ts: Micros
    app_id: str
    kind: str                       # app | runner | task
    subject_id: str                 # the app id, runner id or task id it describes
    runner_id: Optional[str]        # the runner context that reported it
    body: str                       # JSON: {"components", "settings"} | {"settings"} | {"options"}
    source: str
    record_id: Optional[str] = None


class Span(NamedTuple):
    """Every raw span, for the trace view and SQL."""
    start_ts: Micros
    end_ts: Micros
    app_id: str
    resource_id: str
    trace_id: str
    span_id: str
    parent_span_id: Optional[str]
    name: str
    kind: int
    status_code: int
    status_message: Optional[str]
    scope_name: Optional[str]
    invocation_id: Optional[str]
    attributes: Optional[str]
    events: Optional[str]
    links: Optional[str]


class LogRecord(NamedTuple):
    """A log record no dialect turned into canonical rows: an application log line or an unknown event."""
    ts: Micros
    observed_ts: Optional[Micros]
    app_id: str
    resource_id: str
    severity_number: int
    severity_text: Optional[str]
    body: Optional[str]
    event_name: Optional[str]
    trace_id: Optional[str]
    span_id: Optional[str]
    scope_name: Optional[str]
    runner_id: Optional[str]
    worker_id: Optional[str]
    invocation_id: Optional[str]
    task_id: Optional[str]
    attributes: Optional[str]
    record_id: Optional[str] = None


class MetricPoint(NamedTuple):
    """One metric data point; histograms keep count and sum, their buckets in `data`."""
    ts: Micros
    start_ts: Optional[Micros]
    app_id: str
    resource_id: str
    name: str
    kind: str                       # gauge | sum | histogram | exponential_histogram | summary
    unit: Optional[str]
    value: Optional[float]
    count: Optional[int]
    attributes: Optional[str]
    data: Optional[str]
    scope_name: Optional[str]


class InvocationCall(NamedTuple):
    """The call an invocation is of, as its runner named it on registration (tasktrail.call.id)."""
    ts: Micros
    app_id: str
    call_id: str
    invocation_id: str
    task_id: Optional[str]
    arguments: Optional[str]
    source: str                     # dialect name
    record_id: Optional[str] = None


class QueueDepth(NamedTuple):
    """Messages waiting in one queue at `ts` as its broker counted them, and who consumes it (tasktrail.queue.depth)."""
    ts: Micros
    app_id: str
    queue: str
    depth: int
    consumers: Optional[tuple]      # runner ids the reporter names as consumers
    consumer_count: Optional[int]   # consumers the broker counts (RabbitMQ), when it knows
    runner_id: Optional[str]        # the reporting runner context (or poller)
    source: str
    record_id: Optional[str] = None


class Command(NamedTuple):
    """One state of one command (abort, rerun): requested by the API, delivered to a runner context,
    then done, refused or expired (docs/control.md). The latest state per command_id wins (view `commands`)."""
    ts: Micros
    app_id: str
    command_id: str
    kind: str                       # abort | rerun
    target: str                     # the invocation id or workflow run id acted on
    target_kind: str                # invocation | workflow_run
    state: str                      # requested | delivered | done | refused | expired
    requested_by: Optional[str]     # the token's name, or "local"
    runner_id: Optional[str]        # the runner context it was delivered to / that reported
    reason: Optional[str]           # why refused or expired; what was done
    parameters: Optional[str]       # JSON: what acting needs (task id, arguments preview, ...)
    new_invocation_id: Optional[str]  # a re-run's new invocation
    source: str                     # "api" (tasktrail's own records) or the dialect that carried it
    record_id: Optional[str] = None


class Resource(NamedTuple):
    """An OTLP resource, stored once per distinct attribute set."""
    resource_id: str
    first_seen: Micros
    app_id: str
    service_name: Optional[str]
    attributes: str


# table name -> row type; the order here is the order the writer appends in.
TABLES: dict[str, type] = {
    "resources": Resource,
    "transitions": Transition,
    "runner_events": RunnerEvent,
    "atomic_decisions": AtomicDecision,
    "atomic_executions": AtomicExecution,
    "event_records": EventRecord,
    "trigger_runs": TriggerRun,
    "definitions": Definition,
    "spans": Span,
    "log_records": LogRecord,
    "metric_points": MetricPoint,
    "invocation_calls": InvocationCall,
    "queue_depths": QueueDepth,
    # issue 19: commands (store/sql/0011_commands.sql)
    "command_records": Command,
}
