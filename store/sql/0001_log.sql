-- 0001_log: the append-only log. Every table starts with `batch`, the writer's commit number.
-- Column order after `batch` is the field order of the row types in proto/model.py.

CREATE TABLE resources (
    batch BIGINT NOT NULL, resource_id VARCHAR NOT NULL, first_seen TIMESTAMP NOT NULL,
    app_id VARCHAR NOT NULL, service_name VARCHAR, attributes VARCHAR
);

CREATE TABLE transitions (
    batch BIGINT NOT NULL, ts TIMESTAMP NOT NULL, app_id VARCHAR NOT NULL, invocation_id VARCHAR NOT NULL,
    task_id VARCHAR, status VARCHAR NOT NULL, previous_status VARCHAR, runner_id VARCHAR, worker_id VARCHAR,
    owner_runner_id VARCHAR, attempt INTEGER, source VARCHAR, trace_id VARCHAR, span_id VARCHAR,
    parent_invocation_id VARCHAR, parent_event_id VARCHAR, workflow_id VARCHAR, workflow_type VARCHAR,
    workflow_parent_id VARCHAR, arguments VARCHAR, result VARCHAR, error_type VARCHAR, error_message VARCHAR,
    error_traceback VARCHAR, duration_s DOUBLE, attrs VARCHAR
);

CREATE TABLE runner_events (
    batch BIGINT NOT NULL, ts TIMESTAMP NOT NULL, app_id VARCHAR NOT NULL, runner_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL, runner_class VARCHAR, parent_runner_id VARCHAR, hostname VARCHAR, pid BIGINT,
    thread_id BIGINT, atomic_eligible BOOLEAN, consumed_queues VARCHAR[], source VARCHAR, attrs VARCHAR
);

CREATE TABLE atomic_decisions (
    batch BIGINT NOT NULL, ts TIMESTAMP NOT NULL, app_id VARCHAR NOT NULL, runner_id VARCHAR NOT NULL,
    reason VARCHAR NOT NULL, cycle_start TIMESTAMP, slot_start TIMESTAMP, slot_end TIMESTAMP, position INTEGER,
    runner_count INTEGER, assigned_runner_id VARCHAR, message VARCHAR, source VARCHAR
);

CREATE TABLE atomic_executions (
    batch BIGINT NOT NULL, ts TIMESTAMP NOT NULL, app_id VARCHAR NOT NULL, run_id VARCHAR NOT NULL,
    runner_id VARCHAR, start_ts TIMESTAMP, end_ts TIMESTAMP, status VARCHAR NOT NULL, reason VARCHAR, source VARCHAR
);

CREATE TABLE event_records (
    batch BIGINT NOT NULL, ts TIMESTAMP NOT NULL, app_id VARCHAR NOT NULL, event_id VARCHAR NOT NULL,
    event_code VARCHAR, payload VARCHAR, matched_condition_ids VARCHAR[], valid_condition_ids VARCHAR[],
    emitted_by_invocation_id VARCHAR, emitted_by_task_id VARCHAR, emitted_by_runner_id VARCHAR, source VARCHAR
);

CREATE TABLE trigger_runs (
    batch BIGINT NOT NULL, ts TIMESTAMP NOT NULL, app_id VARCHAR NOT NULL, trigger_run_id VARCHAR NOT NULL,
    trigger_id VARCHAR, task_id VARCHAR, logic VARCHAR, condition_ids VARCHAR[], valid_condition_ids VARCHAR[],
    event_ids VARCHAR[], source_invocation_ids VARCHAR[], triggered_invocation_id VARCHAR,
    arguments_preview VARCHAR, claimed_at TIMESTAMP, executed_at TIMESTAMP, participants VARCHAR,
    atomic_service_run_id VARCHAR, atomic_service_runner_id VARCHAR, source VARCHAR
);

CREATE TABLE spans (
    batch BIGINT NOT NULL, start_ts TIMESTAMP NOT NULL, end_ts TIMESTAMP, app_id VARCHAR NOT NULL,
    resource_id VARCHAR, trace_id VARCHAR NOT NULL, span_id VARCHAR NOT NULL, parent_span_id VARCHAR,
    name VARCHAR, kind INTEGER, status_code INTEGER, status_message VARCHAR, scope_name VARCHAR,
    invocation_id VARCHAR, attributes VARCHAR, events VARCHAR, links VARCHAR
);

CREATE TABLE log_records (
    batch BIGINT NOT NULL, ts TIMESTAMP NOT NULL, observed_ts TIMESTAMP, app_id VARCHAR NOT NULL,
    resource_id VARCHAR, severity_number INTEGER, severity_text VARCHAR, body VARCHAR, event_name VARCHAR,
    trace_id VARCHAR, span_id VARCHAR, scope_name VARCHAR, runner_id VARCHAR, worker_id VARCHAR,
    invocation_id VARCHAR, task_id VARCHAR, attributes VARCHAR
);

CREATE TABLE metric_points (
    batch BIGINT NOT NULL, ts TIMESTAMP NOT NULL, start_ts TIMESTAMP, app_id VARCHAR NOT NULL,
    resource_id VARCHAR, name VARCHAR NOT NULL, kind VARCHAR, unit VARCHAR, value DOUBLE, count BIGINT,
    attributes VARCHAR, data VARCHAR, scope_name VARCHAR
);

-- One row per accepted request: what was received, its content hash (dedupe of retries), where it went.
CREATE TABLE ingest_ledger (
    batch BIGINT NOT NULL, received_at TIMESTAMP NOT NULL, request_hash VARCHAR NOT NULL,
    transport VARCHAR, signal VARCHAR, body_bytes BIGINT, records BIGINT, rows BIGINT
);
