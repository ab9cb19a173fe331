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

-- Where to look in invocation_state for an id (kind 0) or a parent's children (kind 1): the sorted runs and the
-- newest keys together (store/invocation_keys.py; store/api.py BY_ID reads it).
CREATE OR REPLACE VIEW invocation_keys_all AS
SELECT kind, key_hash, created_at FROM invocation_keys
UNION ALL SELECT kind, key_hash, created_at FROM invocation_keys_new;

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
-- `command_steps`: the records that count. tasktrail's own (source 'api': requested, delivered, expired) of a
-- requested command, and an agent's report only when it comes from the command's app and the runner context
-- tasktrail delivered it to (its first `delivered`), committed after that delivery (a later writer batch: the
-- agent's own clock is not trusted), and only the first such report of each state — and of done or refused
-- together, the first (in commit order): an outcome, once reported, is final. A report sent again, a forged
-- one, one before any delivery, from another app or runner stays in `command_records` and counts nowhere.
CREATE OR REPLACE MACRO command_state_order(ts, state) AS
    (CASE state WHEN 'requested' THEN 0 WHEN 'delivered' THEN 1 WHEN 'expired' THEN 2 ELSE 3 END)
    * 10000000000000000 + epoch_us(ts);
CREATE OR REPLACE VIEW command_steps AS
WITH req AS (SELECT command_id, arg_min(app_id, ts) AS app_id FROM command_records
             WHERE state = 'requested' AND source = 'api' GROUP BY command_id),
     dlv AS (SELECT command_id, arg_min(runner_id, batch) AS runner_id, min(batch) AS batch FROM command_records
             WHERE state = 'delivered' AND source = 'api' GROUP BY command_id),
     counted AS (
        SELECT r.* FROM command_records r JOIN req ON req.command_id = r.command_id
        LEFT JOIN dlv ON dlv.command_id = r.command_id
        WHERE r.source = 'api'
           OR (r.app_id = req.app_id AND r.runner_id IS NOT DISTINCT FROM dlv.runner_id AND dlv.batch IS NOT NULL
               AND r.batch > dlv.batch))
SELECT * FROM counted
QUALIFY source = 'api' OR row_number() OVER (
    PARTITION BY command_id, CASE WHEN state IN ('done', 'refused') THEN 'outcome' ELSE state END
    ORDER BY batch, ts) = 1;
CREATE OR REPLACE VIEW commands AS
SELECT command_id, arg_min(app_id, ts) FILTER (WHERE state = 'requested') AS app_id,
       arg_min(kind, ts) FILTER (WHERE state = 'requested') AS kind,
       arg_min(target, ts) FILTER (WHERE state = 'requested') AS target,
       arg_min(target_kind, ts) FILTER (WHERE state = 'requested') AS target_kind,
       arg_min(requested_by, ts) FILTER (WHERE state = 'requested') AS requested_by,
       min(ts) FILTER (WHERE state = 'requested') AS requested_at,
       arg_max(state, command_state_order(ts, state)) AS state,
       arg_max(runner_id, command_state_order(ts, state)) FILTER (WHERE runner_id IS NOT NULL) AS runner_id,
       max(ts) AS updated_at,
       arg_max(reason, command_state_order(ts, state)) FILTER (WHERE reason IS NOT NULL) AS reason,
       arg_min(parameters, ts) FILTER (WHERE state = 'requested') AS parameters,
       arg_max(new_invocation_id, command_state_order(ts, state)) FILTER (WHERE new_invocation_id IS NOT NULL
                                                                            AND state = 'done') AS new_invocation_id
FROM command_steps GROUP BY command_id;  -- a report on no known command, or not from its runner, is kept, not shown
