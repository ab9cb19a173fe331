-- Convenience views, recreated at every open (they hold no data). Documented in docs/sql.md.

-- The order of a transition: its time, then its place in the lifecycle for equal times (registration,
-- waiting, running, outcome: proto/status.py STATUS_RANK, as the history rule and status_key order them).
-- `arg_max(status, status_order(ts, status))` is the latest status by that order.
-- (Rendered by store/migrations.py: {{rank_scale}} and {{status_rank}} come from proto/status.py.)
CREATE OR REPLACE MACRO status_order(ts, status) AS
    epoch_us(ts) * {rank_scale} + {status_rank};

-- Status transitions as sent, with previous_status derived where the runner did not send it.
CREATE OR REPLACE VIEW status_transitions AS
SELECT ts AS timestamp, app_id, invocation_id, task_id, status,
       coalesce(previous_status, lag(status) OVER (PARTITION BY app_id, invocation_id ORDER BY ts)) AS previous_status,
       runner_id, worker_id, owner_runner_id, attempt, source, trace_id, span_id
FROM transitions;

-- One row per invocation (the writer-maintained cache of the log, store/state.py): its current status is
-- the last of its settled history (proto/history.py); `is_final` after `status`; the columns are
-- store/api.py INVOCATION_COLUMNS.
CREATE OR REPLACE VIEW invocations AS
SELECT {invocation_columns}
FROM invocation_state;

-- One row per runner context (the writer-maintained cache, store/state.py): last activity from its
-- lifecycle events, heartbeats and the transitions it stamped.
CREATE OR REPLACE VIEW runners AS
SELECT app_id, runner_id, runner_class, parent_runner_id, hostname, pid, first_seen, last_lifecycle,
       last_heartbeat, stopped_at, started_at, greatest(last_event, last_transition) AS last_activity,
       coalesce(heartbeats, 0) AS heartbeats
FROM runner_state WHERE first_seen IS NOT NULL;

-- Log lines (application logs and records no dialect knew).
CREATE OR REPLACE VIEW logs AS
SELECT ts AS timestamp, app_id, severity_text AS level, severity_number, body AS message, runner_id, worker_id,
       invocation_id, task_id, trace_id, span_id, event_name, scope_name, attributes
FROM log_records;

-- The latest state of every atomic-service execution window.
CREATE OR REPLACE VIEW atomic_service_executions AS
SELECT app_id, run_id, arg_max(runner_id, ts) AS runner_id, min(start_ts) AS start_ts,
       arg_max(end_ts, ts) AS end_ts, arg_max(status, status_order(ts, status)) AS status, arg_max(reason, ts) AS reason
FROM atomic_executions GROUP BY app_id, run_id;

-- issue 19: each command's latest state (docs/control.md). A state outranks the ones before it in a command's
-- life (requested < delivered < expired < done = refused: a runner's late report of what it did wins over
-- expiry), then the later record; every state stays in `command_records`.
CREATE OR REPLACE MACRO command_state_order(ts, state) AS
    (CASE state WHEN 'requested' THEN 0 WHEN 'delivered' THEN 1 WHEN 'expired' THEN 2 ELSE 3 END)
    * 10000000000000000 + epoch_us(ts);
CREATE OR REPLACE VIEW commands AS
SELECT command_id, arg_min(app_id, ts) FILTER (WHERE state = 'requested') AS app_id, arg_min(kind, ts) AS kind, arg_min(target, ts) AS target,
       arg_min(target_kind, ts) AS target_kind,
       arg_min(requested_by, ts) FILTER (WHERE state = 'requested') AS requested_by,
       min(ts) FILTER (WHERE state = 'requested') AS requested_at,
       arg_max(state, command_state_order(ts, state)) AS state,
       arg_max(runner_id, command_state_order(ts, state)) FILTER (WHERE runner_id IS NOT NULL) AS runner_id,
       max(ts) AS updated_at,
       arg_max(reason, command_state_order(ts, state)) FILTER (WHERE reason IS NOT NULL) AS reason,
       arg_min(parameters, ts) FILTER (WHERE state = 'requested') AS parameters,
       max(new_invocation_id) AS new_invocation_id
FROM command_records GROUP BY command_id
HAVING count(*) FILTER (WHERE state = 'requested') > 0;  -- a report on no known command is kept, not shown
