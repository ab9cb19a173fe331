-- 0002_invocation_state: one row per invocation, kept current by the writer in the transaction that
-- appends its transitions. A cache of the log (`tasktrail rebuild` recomputes it), so list pages,
-- the overview and /metrics read one row per invocation instead of every transition.
-- status_key orders transitions as the status_order macro (views.sql): time, then lifecycle rank.
CREATE TABLE invocation_state (
    app_id VARCHAR NOT NULL, invocation_id VARCHAR NOT NULL, task_id VARCHAR, status VARCHAR NOT NULL,
    status_key BIGINT NOT NULL, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL, started_at TIMESTAMP,
    parent_invocation_id VARCHAR, parent_event_id VARCHAR, workflow_id VARCHAR, workflow_type VARCHAR,
    runner_id VARCHAR, worker_id VARCHAR, attempts INTEGER NOT NULL
);
-- No primary key on purpose: the writer folds with MERGE (store/state.py); a unique index over every
-- invocation cost memory that the buffer cache (and with it the timeline) missed.
