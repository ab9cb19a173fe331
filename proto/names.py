"""Attribute and event names of the two built-in dialects.

tasktrail.v1 is our own convention; `TASKTRAIL_V1_EVENTS` below is the single
source of the reference page `docs/tasktrail-v1.md` (`tasktrail docs-conventions`
regenerates it) and of the Python emitter.
"""
from __future__ import annotations

from typing import NamedTuple

REVISION = "telemetry.mapping.revision"

# --- resource attributes every dialect reads -------------------------------------------
SERVICE_NAME = "service.name"
SERVICE_NAMESPACE = "service.namespace"
SERVICE_INSTANCE_ID = "service.instance.id"
HOST_NAME = "host.name"
PROCESS_PID = "process.pid"
THREAD_ID = "thread.id"
MESSAGING_DESTINATION = "messaging.destination"  # the queue a Celery task was sent to / taken from

# Attributes a transition keeps (transitions.attrs) that name the queue its invocation waits in.
RV_QUEUE = "rustvello.queue"
QUEUE_ATTRS = (MESSAGING_DESTINATION, RV_QUEUE)

# --- rustvello-otel.v1 (what rustvello 0.9 sends) ----------------------------------------
RUSTVELLO_V1 = "rustvello-otel.v1"
RV_APP_ID = "rustvello.app.id"
RV_WORKER_ID = "rustvello.worker.id"
RV_WORKER_CLASS = "rustvello.worker.class"
RV_WORKER_PARENT_ID = "rustvello.worker.parent.id"
RV_TASK_ID = "rustvello.task.id"
RV_INVOCATION_ID = "rustvello.invocation.id"
RV_ATTEMPT = "rustvello.attempt"
RV_PARENT_INVOCATION_ID = "rustvello.parent.invocation.id"
RV_WORKFLOW_ID = "rustvello.workflow.id"
RV_WORKFLOW_TYPE = "rustvello.workflow.type"
RV_WORKFLOW_PARENT_ID = "rustvello.workflow.parent.id"
RV_DURATION_S = "rustvello.duration.s"
RV_ERROR_TYPE = "rustvello.error.type"
RV_EVENT = "rustvello.event"
RV_SCOPE = "rustvello.lifecycle"

# --- tasktrail.v1 -------------------------------------------------------------------------
TASKTRAIL_V1 = "tasktrail.v1"
TT_SCOPE = "tasktrail"
TT_APP_ID = "tasktrail.app.id"

# runner context (resource, scope or record attributes; the record's win, then the scope's)
TT_RUNNER_ID = "tasktrail.runner.id"
TT_RUNNER_CLASS = "tasktrail.runner.class"
TT_RUNNER_PARENT_ID = "tasktrail.runner.parent.id"
TT_RUNNER_HOSTNAME = "tasktrail.runner.hostname"
TT_RUNNER_PID = "tasktrail.runner.pid"
TT_RUNNER_THREAD_ID = "tasktrail.runner.thread_id"

# invocation
TT_INVOCATION_ID = "tasktrail.invocation.id"
TT_TASK_ID = "tasktrail.task.id"
TT_STATUS = "tasktrail.status"
TT_PREVIOUS_STATUS = "tasktrail.previous_status"
TT_OWNER_RUNNER_ID = "tasktrail.owner.runner.id"
TT_ATTEMPT = "tasktrail.attempt"
TT_PARENT_INVOCATION_ID = "tasktrail.parent.invocation.id"
TT_PARENT_EVENT_ID = "tasktrail.parent.event.id"
TT_WORKFLOW_ID = "tasktrail.workflow.id"
TT_WORKFLOW_TYPE = "tasktrail.workflow.type"
TT_WORKFLOW_PARENT_ID = "tasktrail.workflow.parent.id"
TT_ARGUMENTS = "tasktrail.arguments"
TT_RESULT = "tasktrail.result"
TT_ERROR_TYPE = "tasktrail.error.type"
TT_ERROR_MESSAGE = "tasktrail.error.message"
TT_ERROR_TRACEBACK = "tasktrail.error.traceback"
TT_DURATION_S = "tasktrail.duration.s"

# calls (issue 18): the call an invocation is of (pynenc's call_id: task id + arguments hash)
TT_CALL_ID = "tasktrail.call.id"

# identity and order of any tasktrail.v1 record (at-least-once delivery, one clock tick)
TT_RECORD_ID = "tasktrail.record.id"
TT_SEQ = "tasktrail.seq"

# heartbeat
TT_ATOMIC_ELIGIBLE = "tasktrail.runner.atomic_eligible"
TT_CONSUMED_QUEUES = "tasktrail.runner.consumed_queues"

# atomic service
TT_AS_REASON = "tasktrail.atomic.reason"
TT_AS_CYCLE_START = "tasktrail.atomic.cycle_start"
TT_AS_SLOT_START = "tasktrail.atomic.slot_start"
TT_AS_SLOT_END = "tasktrail.atomic.slot_end"
TT_AS_POSITION = "tasktrail.atomic.position"
TT_AS_RUNNER_COUNT = "tasktrail.atomic.runner_count"
TT_AS_ASSIGNED_RUNNER_ID = "tasktrail.atomic.assigned_runner_id"
TT_AS_MESSAGE = "tasktrail.atomic.message"
TT_AS_RUN_ID = "tasktrail.atomic.run_id"
TT_AS_START = "tasktrail.atomic.start"
TT_AS_END = "tasktrail.atomic.end"
TT_AS_STATUS = "tasktrail.atomic.status"

# trigger events and runs
TT_EVENT_ID = "tasktrail.event.id"
TT_EVENT_CODE = "tasktrail.event.code"
TT_EVENT_PAYLOAD = "tasktrail.event.payload"
TT_EVENT_MATCHED = "tasktrail.event.matched_condition_ids"
TT_EVENT_VALID = "tasktrail.event.valid_condition_ids"
TT_EVENT_EMITTED_BY_INVOCATION = "tasktrail.event.emitted_by.invocation.id"
TT_EVENT_EMITTED_BY_TASK = "tasktrail.event.emitted_by.task.id"
TT_EVENT_EMITTED_BY_RUNNER = "tasktrail.event.emitted_by.runner.id"
TT_TR_ID = "tasktrail.trigger_run.id"
TT_TR_TRIGGER_ID = "tasktrail.trigger_run.trigger_id"
TT_TR_LOGIC = "tasktrail.trigger_run.logic"
TT_TR_CONDITION_IDS = "tasktrail.trigger_run.condition_ids"
TT_TR_VALID_CONDITION_IDS = "tasktrail.trigger_run.valid_condition_ids"
TT_TR_EVENT_IDS = "tasktrail.trigger_run.event_ids"
TT_TR_SOURCE_INVOCATION_IDS = "tasktrail.trigger_run.source_invocation_ids"
TT_TR_TRIGGERED_INVOCATION_ID = "tasktrail.trigger_run.triggered_invocation_id"
TT_TR_ARGUMENTS = "tasktrail.trigger_run.arguments_preview"
TT_TR_CLAIMED_AT = "tasktrail.trigger_run.claimed_at"
TT_TR_EXECUTED_AT = "tasktrail.trigger_run.executed_at"
TT_TR_PARTICIPANTS = "tasktrail.trigger_run.participants"
TT_TR_AS_RUN_ID = "tasktrail.trigger_run.atomic_service_run_id"
TT_TR_AS_RUNNER_ID = "tasktrail.trigger_run.atomic_service_runner_id"

# definitions: app configuration, runner settings, task definitions (issue 18, store/sql/0008)
TT_APP_COMPONENTS = "tasktrail.app.components"
TT_APP_SETTINGS = "tasktrail.app.settings"
TT_RUNNER_SETTINGS = "tasktrail.runner.settings"
TT_TASK_OPTIONS = "tasktrail.task.options"

# event names (OTLP LogRecord.event_name, or a span event's name)
EV_STATUS = "tasktrail.status"
EV_RUNNER_STARTED = "tasktrail.runner.started"
EV_RUNNER_STOPPED = "tasktrail.runner.stopped"
EV_RUNNER_HEARTBEAT = "tasktrail.runner.heartbeat"
EV_RUNNER_CONTEXT = "tasktrail.runner.context"
EV_ATOMIC_DECISION = "tasktrail.atomic.decision"
EV_ATOMIC_EXECUTION = "tasktrail.atomic.execution"
EV_EVENT = "tasktrail.event"
EV_TRIGGER_RUN = "tasktrail.trigger_run"
EV_APP_CONFIG = "tasktrail.app.config"
EV_RUNNER_CONFIG = "tasktrail.runner.config"
EV_TASK_DEFINITION = "tasktrail.task.definition"

# queue depths (issue 18: pending messages per queue and who consumes them)
EV_QUEUE_DEPTH = "tasktrail.queue.depth"
TT_QUEUE_NAME = "tasktrail.queue.name"
TT_QUEUE_PENDING = "tasktrail.queue.pending"
TT_QUEUE_CONSUMERS = "tasktrail.queue.consumers"
TT_QUEUE_CONSUMER_COUNT = "tasktrail.queue.consumer_count"

# Keys that tie any record (also application logs) to an invocation, task or runner.
INVOCATION_KEYS = (TT_INVOCATION_ID, RV_INVOCATION_ID, "pynenc.invocation_id", "invocation_id")
TASK_KEYS = (TT_TASK_ID, RV_TASK_ID, "pynenc.task_id", "task_id")
RUNNER_KEYS = (TT_RUNNER_ID, RV_WORKER_ID, "pynenc.runner_id", "runner_id")


class Attr(NamedTuple):
    name: str
    type: str       # string | int | double | bool | string[] | timestamp | json
    required: bool
    doc: str


class EventSpec(NamedTuple):
    event_name: str
    entity: str
    doc: str
    attributes: tuple[Attr, ...]


_TS = "timestamp"  # int nanoseconds since the epoch, or an RFC 3339 string

# Every tasktrail.v1 record may carry these (the emitter and the pynenc exporter always do).
_IDENTITY = (
    Attr(TT_RECORD_ID, "string", False, "This record's own id, the same on every delivery of it (a re-sent, re-batched "
         "or retried record counts once). Without it the record's content is its identity."),
    Attr(TT_SEQ, "int", False, "The sender's own order: a number that grows with every record one process sends. "
         "Records of one sender are shown in this order, also when their timestamps are equal or go back."),
)

_RUNNER_CTX = (
    Attr(TT_RUNNER_ID, "string", False, "Runner context that acts (on the record or its scope; else the resource's)."),
    Attr(TT_RUNNER_CLASS, "string", False, "Its class, e.g. ThreadRunner, PPRWorker."),
    Attr(TT_RUNNER_PARENT_ID, "string", False, "Parent runner id: a worker's parent is its runner."),
    Attr(TT_RUNNER_HOSTNAME, "string", False, "Host (else resource host.name, for the resource's own context)."),
    Attr(TT_RUNNER_PID, "int", False, "Process id (else resource process.pid, for the resource's own context)."),
    Attr(TT_RUNNER_THREAD_ID, "int", False, "Thread id."),
)

TASKTRAIL_V1_EVENTS: tuple[EventSpec, ...] = (
    EventSpec(EV_STATUS, "status transition", "One invocation changed status.", (
        Attr(TT_INVOCATION_ID, "string", True, "Invocation id."),
        Attr(TT_STATUS, "string", True, "New status: one of the 13 canonical names (pynenc's lower-case values accepted)."),
        Attr(TT_TASK_ID, "string", False, "Task id (module.function)."),
        Attr(TT_PREVIOUS_STATUS, "string", False, "Status before; derived from the log when absent."),
        Attr(TT_OWNER_RUNNER_ID, "string", False, "Owner runner after the transition."),
        Attr(TT_ATTEMPT, "int", False, "Attempt number, 0 first."),
        Attr(TT_PARENT_INVOCATION_ID, "string", False, "Invocation that called this one."),
        Attr(TT_PARENT_EVENT_ID, "string", False, "Trigger event that created it."),
        Attr(TT_WORKFLOW_ID, "string", False, "Workflow id (the workflow-defining invocation)."),
        Attr(TT_WORKFLOW_TYPE, "string", False, "Workflow type (task id of the root)."),
        Attr(TT_WORKFLOW_PARENT_ID, "string", False, "Parent workflow of a sub-workflow."),
        Attr(TT_ARGUMENTS, "json", False, "Arguments preview (JSON text or plain string)."),
        Attr(TT_RESULT, "json", False, "Result preview, on SUCCESS."),
        Attr(TT_ERROR_TYPE, "string", False, "Exception type, on FAILED/RETRY."),
        Attr(TT_ERROR_MESSAGE, "string", False, "Exception message."),
        Attr(TT_ERROR_TRACEBACK, "string", False, "Formatted traceback."),
        Attr(TT_DURATION_S, "double", False, "Attempt duration in seconds, on final statuses."),
        Attr(TT_CALL_ID, "string", False, "The call this invocation is of (pynenc's call_id key: the task id and a hash "
             "of its arguments), on REGISTERED: invocations of one call share it (the /calls page)."),
    ) + _RUNNER_CTX),
    EventSpec(EV_RUNNER_CONTEXT, "runner context", "A runner context exists (sent once when it is created).", _RUNNER_CTX),
    EventSpec(EV_RUNNER_STARTED, "runner lifecycle", "A runner or worker started.", _RUNNER_CTX),
    EventSpec(EV_RUNNER_STOPPED, "runner lifecycle", "A runner or worker stopped.", _RUNNER_CTX),
    EventSpec(EV_RUNNER_HEARTBEAT, "heartbeat", "A runner is alive.", (
        Attr(TT_ATOMIC_ELIGIBLE, "bool", False, "May run atomic services."),
        Attr(TT_CONSUMED_QUEUES, "string[]", False, "Queues it consumes."),
    ) + _RUNNER_CTX),
    EventSpec(EV_ATOMIC_DECISION, "atomic-service decision", "One claim decision of one runner.", (
        Attr(TT_AS_REASON, "string", True, "ASSIGNED, NOT_ASSIGNED_SLOT, NO_STABLE_RUNNERS, SCHEDULED_RUNNER_IN_GRACE, SLOT_WINDOW_INVALID or LATE_START."),
        Attr(TT_AS_CYCLE_START, _TS, False, "Start of the scheduling cycle."),
        Attr(TT_AS_SLOT_START, _TS, False, "Start of the runner's slot."),
        Attr(TT_AS_SLOT_END, _TS, False, "End of the runner's slot."),
        Attr(TT_AS_POSITION, "int", False, "Runner's position in the stable set."),
        Attr(TT_AS_RUNNER_COUNT, "int", False, "Stable runner count."),
        Attr(TT_AS_ASSIGNED_RUNNER_ID, "string", False, "Runner the current slot belongs to."),
        Attr(TT_AS_MESSAGE, "string", False, "Skip message."),
    ) + _RUNNER_CTX),
    EventSpec(EV_ATOMIC_EXECUTION, "atomic-service execution", "An execution window started, ended or was blocked.", (
        Attr(TT_AS_RUN_ID, "string", True, "Atomic-service run id."),
        Attr(TT_AS_STATUS, "string", True, "RUNNING, COMPLETED, ABANDONED or BLOCKED."),
        Attr(TT_AS_START, _TS, False, "Window start."),
        Attr(TT_AS_END, _TS, False, "Window end (absent while RUNNING)."),
        Attr(TT_AS_REASON, "string", False, "Reason, e.g. prior_running:<run> runner:<id>, exception:<Type>."),
    ) + _RUNNER_CTX),
    EventSpec(EV_EVENT, "trigger event", "A trigger event was emitted (or updated with its matches).", (
        Attr(TT_EVENT_ID, "string", True, "Event id."),
        Attr(TT_EVENT_CODE, "string", False, "Event code."),
        Attr(TT_EVENT_PAYLOAD, "json", False, "Payload as JSON text."),
        Attr(TT_EVENT_MATCHED, "string[]", False, "Matched condition ids."),
        Attr(TT_EVENT_VALID, "string[]", False, "Valid condition ids."),
        Attr(TT_EVENT_EMITTED_BY_INVOCATION, "string", False, "Emitting invocation."),
        Attr(TT_EVENT_EMITTED_BY_TASK, "string", False, "Emitting task."),
        Attr(TT_EVENT_EMITTED_BY_RUNNER, "string", False, "Emitting runner context."),
    )),
    EventSpec(EV_TRIGGER_RUN, "trigger run", "A trigger fired and (maybe) created an invocation.", (
        Attr(TT_TR_ID, "string", True, "Trigger run id."),
        Attr(TT_TR_TRIGGER_ID, "string", False, "Trigger id."),
        Attr(TT_TASK_ID, "string", False, "Task the trigger runs."),
        Attr(TT_TR_LOGIC, "string", False, "and | or."),
        Attr(TT_TR_CONDITION_IDS, "string[]", False, "Condition ids."),
        Attr(TT_TR_VALID_CONDITION_IDS, "string[]", False, "Valid condition ids."),
        Attr(TT_TR_EVENT_IDS, "string[]", False, "Events that took part."),
        Attr(TT_TR_SOURCE_INVOCATION_IDS, "string[]", False, "Source invocations (status/result/exception triggers)."),
        Attr(TT_TR_TRIGGERED_INVOCATION_ID, "string", False, "Invocation created."),
        Attr(TT_TR_ARGUMENTS, "string", False, "Arguments preview."),
        Attr(TT_TR_CLAIMED_AT, _TS, False, "When the run was claimed."),
        Attr(TT_TR_EXECUTED_AT, _TS, False, "When it executed."),
        Attr(TT_TR_PARTICIPANTS, "json", False, "Participants as a JSON list of {context_type, condition_id, valid_condition_id, event_id, source_invocation_id, context_timestamp, context_summary}."),
        Attr(TT_TR_AS_RUN_ID, "string", False, "Atomic-service run that evaluated it."),
        Attr(TT_TR_AS_RUNNER_ID, "string", False, "Runner of that atomic-service run."),
    )),
    # definitions (store/sql/0008): sent when an app or runner starts and again only when a value changes;
    # tasktrail shows the latest of each with the time it was reported (query/definitions.py).
    EventSpec(EV_APP_CONFIG, "app configuration", "The app's component classes and settings, as a process of "
              "the app holds them (sent at start and when they change; the latest report wins).", (
        Attr(TT_APP_COMPONENTS, "json", False, "Component classes as a JSON object, e.g. {\"broker\": "
             "\"RedisBroker\", \"orchestrator\": …, \"state_backend\": …, \"serializer\": …, \"trigger\": …, "
             "\"runner\": …}."),
        Attr(TT_APP_SETTINGS, "json", True, "Settings as a JSON object of name -> value (pynenc: every field of "
             "app.conf, e.g. dev_mode_force_sync_tasks, logging_level, log_format, argument_print_mode, "
             "atomic_service_interval_minutes, runner_considered_dead_after_minutes, max_pending_seconds, and "
             "the orchestrator's auto_final_invocation_purge_hours). Mask secrets before sending."),
    ) + _RUNNER_CTX),
    EventSpec(EV_RUNNER_CONFIG, "runner settings", "A runner's settings (sent when it starts and when they "
              "change; the runner context is the runner they belong to).", (
        Attr(TT_RUNNER_SETTINGS, "json", True, "Settings as a JSON object of name -> value (pynenc: every field "
             "of runner.conf, e.g. runner_loop_sleep_time_sec, min_threads, max_threads, min_parallel_slots)."),
    ) + _RUNNER_CTX),
    EventSpec(EV_TASK_DEFINITION, "task definition", "A task's options (sent when a process first uses the task "
              "and when they change).", (
        Attr(TT_TASK_ID, "string", True, "Task id (module.function)."),
        Attr(TT_TASK_OPTIONS, "json", True, "Options as a JSON object of name -> value (pynenc: every field of "
             "task.conf: registration_concurrency, running_concurrency, key_arguments, max_retries, retry_for "
             "as module.Class names, parallel_batch_size, call_result_cache, …)."),
    ) + _RUNNER_CTX),
)
# --- issue 19: commands (docs/control.md) ------------------------------------------------------------------
EV_COMMAND = "tasktrail.command"
TT_CMD_ID = "tasktrail.command.id"
TT_CMD_KIND = "tasktrail.command.kind"
TT_CMD_TARGET = "tasktrail.command.target"
TT_CMD_TARGET_KIND = "tasktrail.command.target_kind"
TT_CMD_STATE = "tasktrail.command.state"
TT_CMD_REQUESTED_BY = "tasktrail.command.requested_by"
TT_CMD_REASON = "tasktrail.command.reason"
TT_CMD_PARAMETERS = "tasktrail.command.parameters"
TT_CMD_NEW_INVOCATION_ID = "tasktrail.command.new_invocation_id"
COMMAND_KINDS = ("abort", "rerun")
COMMAND_TARGET_KINDS = ("invocation", "workflow_run")
COMMAND_STATES = ("requested", "delivered", "done", "refused", "expired")
COMMAND_FINAL_STATES = ("done", "refused", "expired")
# What an agent may report (requested and expired are tasktrail's own).
COMMAND_AGENT_STATES = ("delivered", "done", "refused")
TASKTRAIL_V1_EVENTS += (
    EventSpec(EV_COMMAND, "command", "A runner's agent reports what it did with a command tasktrail handed it "
              "(GET /api/v1/agent/commands; docs/control.md). tasktrail itself records requested, delivered and "
              "expired; an agent reports delivered, done or refused.", (
                  Attr(TT_CMD_ID, "string", True, "The command's id, as handed out."),
                  Attr(TT_CMD_STATE, "string", True, "delivered, done or refused."),
                  Attr(TT_CMD_KIND, "string", False, "abort or rerun (as handed out)."),
                  Attr(TT_CMD_TARGET, "string", False, "The invocation or workflow run acted on."),
                  Attr(TT_CMD_TARGET_KIND, "string", False, "invocation or workflow_run."),
                  Attr(TT_CMD_REASON, "string", False, "Why refused; on done, what was done."),
                  Attr(TT_CMD_NEW_INVOCATION_ID, "string", False, "A re-run's new invocation (on done)."),
                  Attr(TT_CMD_REQUESTED_BY, "string", False, "Who asked (tasktrail's own records)."),
                  Attr(TT_CMD_PARAMETERS, "json", False, "What acting needs (tasktrail's own records)."),
              ) + _RUNNER_CTX),
)
# --- end issue 19 ----------------------------------------------------------------------------------------------
TASKTRAIL_V1_EVENTS = tuple(e._replace(attributes=e.attributes + _IDENTITY) for e in TASKTRAIL_V1_EVENTS)

# --- queue depths (query/queues.py) --------------------------------------------------------
TASKTRAIL_V1_EVENTS += (EventSpec(EV_QUEUE_DEPTH, "queue depth", "How many messages wait in one queue now, as its "
                                  "broker counts them (sent periodically, e.g. every 5 s).", (
    Attr(TT_QUEUE_NAME, "string", True, "Queue name as the broker knows it (pynenc's and rustvello's queue, "
         "Celery's routing key)."),
    Attr(TT_QUEUE_PENDING, "int", True, "Messages waiting in it (not yet taken by a consumer)."),
    Attr(TT_QUEUE_CONSUMERS, "string[]", False, "Runner ids that consume the queue, as the reporter knows them "
         "(besides the runners whose heartbeats list it in tasktrail.runner.consumed_queues)."),
    Attr(TT_QUEUE_CONSUMER_COUNT, "int", False, "Consumers the broker itself counts, when it knows (RabbitMQ)."),
) + _RUNNER_CTX + _IDENTITY),)

RESOURCE_ATTRIBUTES: tuple[Attr, ...] = (
    Attr(SERVICE_NAMESPACE, "string", True, "The app id (else tasktrail.app.id, else service.name)."),
    Attr(SERVICE_NAME, "string", False, "Service name, e.g. the runner program."),
    Attr(TT_APP_ID, "string", False, "App id when service.namespace is used for something else."),
    Attr(HOST_NAME, "string", False, "Host."),
    Attr(PROCESS_PID, "int", False, "Process id."),
) + _RUNNER_CTX
